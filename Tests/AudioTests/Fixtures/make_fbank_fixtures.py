#!/usr/bin/env python3
"""Oracle fixtures for FbankTests: real Czech speech clips and their kaldi-native-fbank log-mel features.

For each clip below: the Swift decoder (`w2vbert features --samples-out`) decodes the Ogg/Vorbis file from
Debian's fillets-ng-data-cs, averages channels and resamples to 16 kHz; this script cuts a window of at most
2 s, quantises it to int16 and writes it as a 16-bit 16 kHz mono WAV (Python's `wave`), then computes the
fbank with kaldi-native-fbank on exactly those int16 values (the ×32768 scaling of the feature definition) and writes it
as float32 [T0, 80] .npy. The Swift test reads the WAV (libsndfile gives k/32768, scaled back ×32768, so
both sides see identical samples) and compares its fbank, before CMVN, within 1e-3 absolute.

Run (needs the package fillets-ng-data-cs, a release build, and a Python with numpy + kaldi-native-fbank):
    swift build -c release
    python3 Tests/AudioTests/Fixtures/make_fbank_fixtures.py "$(swift build -c release --show-bin-path)/w2vbert"
"""
import os, subprocess, sys, tempfile, wave
import numpy as np
import kaldi_native_fbank as knf

SOUND = "/usr/share/games/fillets-ng/sound"
# (fixture name, source clip, start seconds, max seconds)     source format
CLIPS = [
    ("tak_22k_mono",       "city/cs/vit-m-tak.ogg",       0.0, 2.0),  # 22.05 kHz mono, whole clip
    ("voda_22k_mono",      "gods/cs/b1-voda1.ogg",        0.0, 1.1),  # 22.05 kHz mono
    ("zapomel_44k_mono",   "linux/cs/2-zapomel.ogg",      0.3, 1.7),  # 44.1 kHz mono
    ("chytra_44k_stereo",  "rush/cs/v-chytra.ogg",        0.2, 2.0),  # 44.1 kHz stereo
    ("bojim_44k_stereo",   "hole/cs/v-bojim.ogg",         0.5, 1.3),  # 44.1 kHz stereo
    ("ja_22k_mono",        "kitchen/cs/kuch-v-ja.ogg",    0.0, 0.6),  # 22.05 kHz mono, short
]


def read_npy_samples(path):
    return np.load(path).astype(np.float32)


def knf_fbank(int16_samples):
    o = knf.FbankOptions()
    o.frame_opts.samp_freq = 16000
    o.frame_opts.frame_shift_ms = 10
    o.frame_opts.frame_length_ms = 25
    o.frame_opts.dither = 0.0
    o.frame_opts.preemph_coeff = 0.97
    o.frame_opts.remove_dc_offset = True
    o.frame_opts.window_type = "povey"
    o.frame_opts.round_to_power_of_two = True
    o.frame_opts.snip_edges = True
    o.mel_opts.num_bins = 80
    o.mel_opts.low_freq = 20
    o.mel_opts.high_freq = 8000
    o.use_energy = False
    o.energy_floor = 0.0
    o.raw_energy = True
    o.htk_compat = False
    o.use_log_fbank = True
    o.use_power = True
    f = knf.OnlineFbank(o)
    f.accept_waveform(16000, int16_samples.astype(np.float32).tolist())  # int16 range: the x32768 scaling
    f.input_finished()
    return np.array([f.get_frame(i) for i in range(f.num_frames_ready)], dtype=np.float32)


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else ".build/release/w2vbert"
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.join(here, "fbank")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel, start, dur in CLIPS:
            src = os.path.join(SOUND, rel)
            s_npy = os.path.join(tmp, name + ".samples.npy")
            subprocess.run([exe, "features", src, "--out", os.path.join(tmp, name + ".feat.npy"),
                            "--no-cmvn", "--samples-out", s_npy], check=True, stdout=subprocess.DEVNULL)
            x = read_npy_samples(s_npy)
            a = int(round(start * 16000))
            x = x[a:a + int(round(dur * 16000))]
            q = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
            with wave.open(os.path.join(out_dir, name + ".wav"), "wb") as w:
                w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
                w.writeframes(q.astype("<i2").tobytes())
            fb = knf_fbank(q)
            np.save(os.path.join(out_dir, name + ".fbank.npy"), fb)
            print(f"{name}: {rel} [{start}s, +{dur}s] -> {len(q)} samples, fbank {fb.shape}, "
                  f"range [{fb.min():.2f}, {fb.max():.2f}]")


if __name__ == "__main__":
    main()
