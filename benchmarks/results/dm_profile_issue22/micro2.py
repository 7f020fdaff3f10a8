import sys, time, resource, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from vision.nets import build_net
torch.set_num_threads(int(sys.argv[1]))
net = build_net("convnet", 1, 10, 28, seed=0, width=128, depth=3)
for p in net.parameters(): p.requires_grad_(False)
x = torch.randn(2560, 1, 28, 28)
def run(chunk):
    with torch.no_grad():
        return torch.cat([net.embed(x[i:i+chunk]) for i in range(0, len(x), chunk)])
ref = run(2560)
res = {}
for rnd in range(2):
    for chunk in [2560, 512, 256, 128, 64]:
        r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
        out = run(chunk)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        res.setdefault(chunk, []).append("wall %.2f user %.2f sys %.2f flt %dk" % (time.perf_counter()-t0, r1.ru_utime-r0.ru_utime, r1.ru_stime-r0.ru_stime, (r1.ru_minflt-r0.ru_minflt)//1000))
        assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
        print(chunk, (out-ref).abs().max().item(), flush=True)
for k, v in res.items(): print(k, v)
