"""Forward+backward time of ResidualVQ: rotation trick vs STE, ours vs vector-quantize-pytorch (CPU).

Run: .venv/bin/python bench/quantizer.py [--repeats 15] [--threads 2]
Configuration: x = (32, 256, 200), 8 stages x 1024 codes, codebook dim 256, EMA codebooks (decay 0.99),
no k-means, no dead-code replacement (lucidrains' default), training mode, commitment loss in the graph.
"""
import argparse, statistics, time
import torch
from rotvq_audio.quantize import ResidualVQ

def ours(grad):
    return ResidualVQ(256, n_q=8, codebook_size=1024, grad=grad, ema=True, decay=0.99,
                      kmeans_init=False, dead_code_threshold=0.0, commitment_weight=1.0).train()

def theirs(rotation):
    from vector_quantize_pytorch import ResidualVQ as LRVQ
    return LRVQ(dim=256, num_quantizers=8, codebook_size=1024, decay=0.99, kmeans_init=False,
                threshold_ema_dead_code=0, rotation_trick=rotation, commitment_weight=1.0).train()

def step_ours(m, x):
    out = m(x)
    (out.quantized.square().mean() + sum(out.losses.values())).backward()

def step_theirs(m, x):
    q, _, commit = m(x.transpose(1, 2))  # channel-last view of the same tensor
    (q.square().mean() + commit.sum()).backward()

def main(repeats=15, warmup=3, threads=2):
    torch.set_num_threads(threads); torch.manual_seed(0)
    x = torch.randn(32, 256, 200, requires_grad=True)
    runs = {"ours rotation": (ours("rotation"), step_ours), "ours ste": (ours("ste"), step_ours),
            "vqp rotation": (theirs(True), step_theirs), "vqp ste": (theirs(False), step_theirs)}
    times = {k: [] for k in runs}
    for i in range(warmup + repeats):
        for name, (m, step) in runs.items():  # interleaved, so load changes hit every variant alike
            x.grad = None; m.zero_grad(set_to_none=True)
            t = time.perf_counter(); step(m, x); dt = time.perf_counter() - t
            if i >= warmup: times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"ResidualVQ fwd+bwd, x=(32, 256, 200), 8x1024 codes, CPU threads={threads}, median of {repeats}")
    print(f"{'variant':<16}{'median ms':>10}{'min ms':>9}")
    for k, v in times.items(): print(f"{k:<16}{1e3 * med[k]:>10.1f}{1e3 * min(v):>9.1f}")
    print(f"rotation / ste (ours): {med['ours rotation'] / med['ours ste']:.3f}  (target <= 1.10)")
    print(f"ours / vqp, rotation:  {med['ours rotation'] / med['vqp rotation']:.3f}  (target <= 1.0)")
    print(f"ours / vqp, ste:       {med['ours ste'] / med['vqp ste']:.3f}")
    return med

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15); p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    main(a.repeats, a.warmup, a.threads)
