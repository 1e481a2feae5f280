# Writes small interop fixtures with the reference Python libraries (run once; outputs are committed):
#   python.safetensors  — two F32 tensors written by `safetensors.numpy.save_file`
#   python.tfevents     — scalars written by TensorBoard's own EventFileWriter
# Needs: pip install safetensors numpy tensorboard
import os, numpy as np
from safetensors.numpy import save_file
here = os.path.dirname(os.path.abspath(__file__))
save_file({"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([-1.5], dtype=np.float32)},
          os.path.join(here, "python.safetensors"), metadata={"made_by": "safetensors"})
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
import glob, shutil, tempfile
tmp = tempfile.mkdtemp()
w = EventFileWriter(tmp)
for step, v in [(1, 0.5), (2, 0.25), (10, -3.0)]:
    s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=v),
                                   summary_pb2.Summary.Value(tag="lr", simple_value=step * 1e-3)])
    w.add_event(event_pb2.Event(step=step, wall_time=1.0, summary=s))
w.close()
shutil.copy(glob.glob(os.path.join(tmp, "events.out.tfevents.*"))[0], os.path.join(here, "python.tfevents"))
