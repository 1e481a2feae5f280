# Opens a run's TensorBoard folder with TensorBoard's EventAccumulator and prints the scalar tags and
# their last values; exits non-zero when there are none. Usage: python check_tensorboard.py DIR [TAG...]
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
tags = acc.Tags()["scalars"]
need = sys.argv[2:]
missing = [t for t in need if t not in tags]
for t in tags:
    ev = acc.Scalars(t)
    print(f"{t}: {len(ev)} points, last step {ev[-1].step} value {ev[-1].value:.6g}")
if not tags or missing:
    print("missing scalars:", missing or "all"); sys.exit(1)
