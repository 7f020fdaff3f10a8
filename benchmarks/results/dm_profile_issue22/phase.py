import sys, resource, time, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "peers"))
import dc_reference as D
from vision.condense import build_condenser
from vision.condense.base import in_chunks
torch.set_num_threads(1)
train = D.digits_train().train
ipc = int(sys.argv[1])
cond = build_condenser("dm", ipc=ipc, iterations=0, batch_real=256, init="real", seed=0, device="cpu",
                       net_options={"width": 128, "depth": 3}, lr_img=1.0, dsa=True)
cond.condense(train); from vision.condense.base import keep_heap_memory; print(keep_heap_memory())
g = torch.Generator().manual_seed(0)
syn = cond.init_images(train, ipc, g).clone().requires_grad_(True)
opt = cond.make_optimizer(syn)
tot = {}
def mark(name, r0, t0):
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    a = tot.setdefault(name, [0, 0, 0, 0])
    a[0] += time.perf_counter() - t0; a[1] += r1.ru_utime - r0.ru_utime; a[2] += r1.ru_stime - r0.ru_stime; a[3] += r1.ru_minflt - r0.ru_minflt
    return resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for it in range(3):
    r, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    net = cond.random_net(it); r, t = mark("net", r, t)
    real = cond.bank.sample(256, g); r, t = mark("sample", r, t)
    ra, sa = cond.augment_pair(real, syn, g); r, t = mark("dsa", r, t)
    c, m, k = ra.shape[0], ra.shape[1], sa.shape[1]
    with torch.no_grad(): er = in_chunks(net.embed, net, ra.flatten(0, 1)).view(c, m, -1); r, t = mark("real_embed", r, t)
    es = in_chunks(net.embed, net, sa.flatten(0, 1)).view(c, k, -1); r, t = mark("syn_embed", r, t)
    loss = ((er.mean(1) - es.mean(1)) ** 2).sum(); opt.zero_grad(); loss.backward(); r, t = mark("backward", r, t)
    opt.step(); r, t = mark("opt", r, t)
for k, v in tot.items(): print(f"{k:12s} wall {v[0]:.2f} user {v[1]:.2f} sys {v[2]:.2f} flt {v[3]//1000}k")
