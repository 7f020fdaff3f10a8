"""Profile DM ipc10 iterations: ours vs reference (same data, settings as dc_reference.py)."""
import sys, time, types
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "peers"))
import torch
import dc_reference as D
from torch.profiler import profile, ProfilerActivity

impl, ipc, its = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
# warm-up 1 iteration outside the profiler
if impl == "ours":
    f = lambda n: D.run_ours("dm", ipc, n, 0)
else:
    f = lambda n: D.run_reference("dm", ipc, n, 0, D.DEFAULT_REF)
f(1)
c0 = time.process_time()
with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
    _, _, sec = f(its)
print(impl, "seconds", sec, "it/s", its / sec, "cpu", time.process_time() - c0)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
