"Property, failure, persistence and distributed tests for rotvq_audio.quantize."
import io, socket
from dataclasses import asdict
import pytest, torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings, strategies as st, HealthCheck
from rotvq_audio.quantize import check_codes, rotation_trick, straight_through, rotation_vjp, ResidualVQ, VectorQuantizer
from rotvq_audio.codebook import Codebook, code_counts, codebook_usage, UsageAccumulator, duplicate_codes

torch.set_num_threads(1)

def explicit_grad(e, q, g):
    "λ Rᵀ g with R built as a matrix (plane rotation ê → q̂), float64, one vector at a time."
    e, q, g = e.double(), q.double(), g.double()
    out = torch.empty_like(g)
    for i, (ev, qv, gv) in enumerate(zip(e.reshape(-1, e.shape[-1]), q.reshape(-1, q.shape[-1]), g.reshape(-1, g.shape[-1]))):
        ne, nq = ev.norm(), qv.norm()
        if nq == 0: out.view(-1, g.shape[-1])[i] = 0; continue
        if ne == 0: out.view(-1, g.shape[-1])[i] = gv; continue
        eh, qh = ev / ne, qv / nq
        c = eh @ qh; w = qh - c * eh; s = w.norm()
        w = w / s if s > 0 else torch.zeros_like(w)
        I = torch.eye(len(ev), dtype=torch.float64)
        R = I + s * (torch.outer(w, eh) - torch.outer(eh, w)) + (c - 1) * (torch.outer(eh, eh) + torch.outer(w, w))
        out.view(-1, g.shape[-1])[i] = nq / ne * R.T @ gv
    return out

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-4, torch.float64: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}

@st.composite
def pairs(draw):
    lead = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    d = draw(st.integers(1, 9))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["random", "e0", "q0", "both0", "parallel", "antiparallel"]))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = 10 ** draw(st.floats(-2, 2))
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(*lead, d, generator=gen) * scale
    q = torch.randn(*lead, d, generator=gen) * scale
    c = torch.rand(*lead, 1, generator=gen) + 0.1
    if kind == "e0": e = torch.zeros_like(e)
    if kind == "q0": q = torch.zeros_like(q)
    if kind == "both0": e, q = torch.zeros_like(e), torch.zeros_like(q)
    if kind == "parallel": q = c * e
    if kind == "antiparallel": q = -c * e
    g = torch.randn(*lead, d, generator=gen)
    return e.to(dtype), q.to(dtype), g.to(dtype), kind

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_rotation_trick_properties(p):
    e, q, g, kind = p
    e = e.clone().requires_grad_(True)
    out = rotation_trick(e, q)
    assert out.dtype == q.dtype and torch.equal(out, q)
    out.backward(g)
    grad = e.grad
    assert grad.dtype == e.dtype and torch.isfinite(grad).all()
    ef, qf, gf, grf = e.detach().double(), q.double(), g.double(), grad.double()
    scale = (qf.norm(dim=-1, keepdim=True) / ef.norm(dim=-1, keepdim=True).clamp_min(1e-30)).clamp(max=1e6)
    tol = TOL[e.dtype] * (1 + scale * gf.norm(dim=-1, keepdim=True))
    if kind == "antiparallel":  # any orthogonal R with Rê = q̂: norms and ⟨·, ê⟩ are fixed
        eh, qh = ef / ef.norm(dim=-1, keepdim=True), qf / qf.norm(dim=-1, keepdim=True)
        assert ((grf.norm(dim=-1, keepdim=True) - scale * gf.norm(dim=-1, keepdim=True)).abs() <= tol).all()
        assert (((grf * eh).sum(-1, keepdim=True) - scale * (gf * qh).sum(-1, keepdim=True)).abs() <= tol).all()
    else:
        assert ((grf - explicit_grad(ef, qf, gf)).abs() <= tol).all()

@settings(max_examples=60, deadline=None)
@given(pairs())
def test_straight_through_properties(p):
    e, q, g, _ = p
    e = e.clone().requires_grad_(True)
    out = straight_through(e, q)
    assert torch.equal(out, q)
    out.backward(g)
    assert torch.equal(e.grad, g)

@pytest.mark.parametrize("d", [1, 2, 3, 7, 64])
def test_antiparallel_jacobian_is_scaled_proper_rotation(d):
    torch.manual_seed(d)
    e = torch.randn(d, dtype=torch.float64); q = -2.5 * e
    J = torch.autograd.functional.jacobian(lambda x: rotation_trick(x, q), e) / 2.5
    torch.testing.assert_close(J @ J.T, torch.eye(d, dtype=J.dtype), atol=1e-6, rtol=0)
    torch.testing.assert_close(J @ (e / e.norm()), q / q.norm(), atol=1e-6, rtol=0)
    assert torch.linalg.det(J).item() == pytest.approx(1.0 if d > 1 else -1.0, abs=1e-4)  # float32 inside

def test_near_antiparallel_gradient_is_accurate():
    torch.manual_seed(0)
    e = torch.randn(16, dtype=torch.float64)
    for eps in (1e-3, 3e-4, 1e-5, 1e-7):  # both sides of the fallback threshold
        q = -e + eps * torch.randn(16, dtype=torch.float64)
        g = torch.randn(16, dtype=torch.float64)
        got = rotation_vjp(e.float(), q.float(), g.float()).double()
        R_q = explicit_grad(e, q, g)  # the exact plane rotation of the (not quite antiparallel) pair
        eh, qh = e / e.norm(), q / q.norm()
        lam = q.norm() / e.norm()
        assert abs(got.norm() - lam * g.norm()) < 1e-4 * lam * g.norm()
        assert abs(got @ eh - lam * (g @ qh)) < 1e-3 * lam * g.norm()  # ⟨Rᵀg, ê⟩ = ⟨g, q̂⟩ to ~√ε
        if eps >= 1e-3: torch.testing.assert_close(got, R_q, atol=1e-3, rtol=1e-3)

def test_rotation_vjp_computes_in_float64_for_float64_inputs():
    torch.manual_seed(0)
    e, q, g = (torch.randn(64, 9, dtype=torch.float64) for _ in range(3))
    got = rotation_vjp(e, q, g)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, explicit_grad(e, q, g), atol=1e-12, rtol=1e-12)
    assert rotation_vjp(e.half(), q.half(), g.half()).dtype == torch.float32  # half inputs: float32 math

def test_rotation_trick_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"): rotation_trick(torch.randn(2, 3), torch.randn(3, 3))

def test_rvq_state_dict_round_trip():
    torch.manual_seed(0)
    rvq = ResidualVQ(12, n_q=3, codebook_size=16, codebook_dim=6, lookup="cosine").train()
    for _ in range(3): rvq(torch.randn(4, 12, 25))
    buf = io.BytesIO(); torch.save(rvq.state_dict(), buf); buf.seek(0)
    torch.manual_seed(1)
    other = ResidualVQ(12, n_q=3, codebook_size=16, codebook_dim=6, lookup="cosine")
    other.load_state_dict(torch.load(buf))
    assert bool(other.stages[0].codebook.initted)
    x = torch.randn(2, 12, 40)
    rvq.eval(); other.eval()
    assert torch.equal(rvq.encode(x), other.encode(x))
    other.train(); other(torch.randn(4, 12, 25))  # loaded codebooks are initialised: no k-means again
    assert not torch.equal(other.stages[0].codebook.embed, torch.zeros_like(other.stages[0].codebook.embed))

def test_errors():
    rvq = ResidualVQ(8, n_q=2, codebook_size=4)
    with pytest.raises(ValueError, match=r"expected channel-first input \(B, 8, T\), got shape \(2, 5, 8\)"): rvq(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="channel-first"): rvq(torch.randn(8, 10))
    x = torch.randn(1, 8, 5); x[0, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"): rvq.eval()(x)  # where a user calls it; training steps skip the sync
    with pytest.raises(ValueError, match="NaN"): rvq.encode(x)
    rvq.train()
    with pytest.raises(ValueError, match=r"n_q ≤ 2, got 3"): rvq(torch.randn(1, 8, 5), n_q=3)
    with pytest.raises(ValueError, match=r"expected codes in \[0, 4\), got values in \[0, 4\]"): check_codes(torch.tensor([[[0, 4]]]), 4, padding=False)
    with pytest.raises(ValueError, match=r"expected codes in \[0, 4\)"): check_codes(torch.tensor([[[-1, 2]]]), 4, padding=False)
    with pytest.raises(ValueError, match=r"codes \(B, n ≤ 2, T\)"): rvq.decode(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer codes"): rvq.decode(torch.zeros(1, 1, 5))
    vq = VectorQuantizer(8, codebook_size=4)
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 8\), got shape \(3, 7\)"): vq(torch.randn(3, 7))
    with pytest.raises(ValueError, match="Inf"): vq(torch.full((3, 8), float("inf")))
    with pytest.raises(ValueError, match="grad"): VectorQuantizer(8, grad="gumbel")
    with pytest.raises(ValueError, match="lookup"): VectorQuantizer(8, lookup="manhattan")
    with pytest.raises(ValueError, match="expected codes < 4"): code_counts(torch.tensor([[[5]]]), 4)

@pytest.mark.parametrize("grad", ["ste", "rotation"])
@pytest.mark.parametrize("n_q", [1, 3, 8])
def test_rvq_encoder_gradient_is_the_chain_rule_and_does_not_grow(grad, n_q):
    "STE without projections passes g exactly; rotation follows a_i = J_iᵀg + (I − J_i)ᵀa_{i+1}, for any n_q."
    torch.manual_seed(0)
    x, g = torch.randn(2, 8, 20), torch.randn(2, 8, 20)
    rvq = ResidualVQ(8, n_q=n_q, codebook_size=16, grad=grad, ema=False, kmeans_init=False, dead_code_threshold=0).train()
    xx = x.clone().requires_grad_(True)
    out = rvq(xx); out.quantized.backward(g)
    if grad == "ste": assert torch.equal(xx.grad, g); return
    books = [st.codebook.embed.detach()[out.codes[:, i]] for i, st in enumerate(rvq.stages)]
    rs, r = [], x.transpose(1, 2)
    for q in books: rs.append(r); r = r - q
    gt, a = g.transpose(1, 2), torch.zeros_like(g.transpose(1, 2))
    for i in reversed(range(n_q)): a = rotation_vjp(rs[i], books[i], gt) + a - rotation_vjp(rs[i], books[i], a)
    torch.testing.assert_close(xx.grad, a.transpose(1, 2), atol=1e-4, rtol=1e-4)
    assert xx.grad.norm() < 3 * g.norm()  # bounded: no n_q-fold growth

def test_rvq_factorized_codes_pass_a_full_rank_gradient():
    "With 4-dim factorized codes, 8 stages still pass the encoder a gradient in all 16 directions."
    torch.manual_seed(0)
    rvq = ResidualVQ(16, n_q=8, codebook_size=32, codebook_dim=4, lookup="cosine", ema=False, kmeans_init=False).eval()
    J = torch.autograd.functional.jacobian(lambda v: rvq(v[None, :, None]).quantized[0, :, 0], torch.randn(16))
    assert torch.linalg.matrix_rank(J) == 16

def test_usage_accumulator_matches_batch_usage():
    torch.manual_seed(0)
    codes = torch.randint(0, 8, (6, 2, 50))
    acc = UsageAccumulator(2, 8)
    for chunk in codes.split(2): acc.update(chunk)
    u, v = acc.compute(), codebook_usage(codes, 8)
    for f in ("utilization", "entropy", "norm_entropy", "perplexity"): torch.testing.assert_close(getattr(u, f), getattr(v, f))

# ---- distributed: EMA codebooks stay identical across ranks ----

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _worker(rank, world, port, path, kmeans_init, threshold):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial codebook on every rank
        rvq = ResidualVQ(6, n_q=2, codebook_size=8, kmeans_init=kmeans_init, dead_code_threshold=threshold, decay=0.9).train()
        for step in range(4):
            x = torch.randn(3, 6, 10, generator=torch.Generator().manual_seed(100 * step + rank)) * (1 + rank)
            torch.manual_seed(1000 * rank + step)  # ranks draw different random numbers (replacements, k-means)
            rvq(x)
        torch.save(rvq.state_dict(), f"{path}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()

def _single(kmeans_init, threshold, world):
    "The same training in one process on the concatenated batches."
    torch.manual_seed(0)
    rvq = ResidualVQ(6, n_q=2, codebook_size=8, kmeans_init=kmeans_init, dead_code_threshold=threshold, decay=0.9).train()
    for step in range(4):
        rvq(torch.cat([torch.randn(3, 6, 10, generator=torch.Generator().manual_seed(100 * step + r)) * (1 + r) for r in range(world)]))
    return rvq.state_dict()

@pytest.mark.parametrize("kmeans_init,threshold", [(True, 0.5), (False, 0.0)])
def test_ddp_codebooks_identical(tmp_path, kmeans_init, threshold):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), kmeans_init, threshold), nprocs=2, join=True)
    s0, s1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert not torch.equal(s0["stages.0.codebook.embed"], _single(kmeans_init, threshold, 1)["stages.0.codebook.embed"])  # data changed it
    if not kmeans_init:  # pure EMA: all-reduced statistics equal those of the concatenated batch
        ref = _single(kmeans_init, threshold, 2)
        for k in s0: torch.testing.assert_close(s0[k], ref[k], atol=1e-5, rtol=1e-5)

# ---- dead-code replacement: bounded, distinct, and quiet in steady state at the batch sizes we train with ----

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 64), st.integers(1, 200), st.floats(0.01, 5.0), st.integers(0, 2**31 - 1), st.booleans())
def test_replacement_never_exceeds_the_vectors_nor_duplicates(K, N, threshold, seed, cosine):
    g = torch.Generator().manual_seed(seed)
    book = Codebook(4, K, kmeans_iters=0, dead_code_threshold=threshold, cosine=cosine)
    with torch.no_grad():
        book.embed.copy_(torch.randn(K, 4, generator=g)); book.cluster_size.copy_(torch.rand(K, generator=g) ** 4)
    before, mean = book.cluster_size.clone(), book.cluster_size.mean()
    n = book.replace_dead_(torch.randn(N, 4, generator=g))
    dead = int((before < threshold * mean).sum())
    assert n == min(dead, N)
    assert duplicate_codes(book.embed) == 0
    moved = (book.cluster_size != before).sum()
    assert moved <= n and torch.isfinite(book.embed).all()

@pytest.fixture(scope="module")
def speech_latents():
    "Latents (600, 128, 50) of 1 s crops of real training speech, from the bundled model's encoder."
    from importlib import resources
    from rotvq_audio.codec import CodecModel
    from rotvq_audio.data import speech_split, load_audio
    model = CodecModel.from_pretrained(str(resources.files("rotvq_audio") / "pretrained" / "default"))
    crops = []
    for r in speech_split("train", exclude_sources=["asterisk_g722"])[::3]:
        a = load_audio(r["path"])
        crops += list(a[: len(a) // 16000 * 16000].view(-1, 16000))
        if len(crops) >= 600: break
    with torch.no_grad(): z = torch.cat([model.encoder(b) for b in torch.stack(crops[:600])[:, None].split(50)])
    return model.config, z

@pytest.mark.parametrize("batch,steps", [(8, 300), (64, 200)])
def test_codebooks_stay_learned_on_speech(speech_latents, batch, steps):
    "The `small` quantizer (12 stages of 1024 codes, dropout 0.5) on real speech latents, batch x 1 s crops."
    cfg, z = speech_latents
    torch.manual_seed(0)
    rvq = ResidualVQ(cfg.latent_dim, cfg.n_q, cfg.codebook_size, cfg.codebook_dim, cfg.quantizer_dropout, **asdict(cfg.quantizer)).train()
    g = torch.Generator().manual_seed(1)
    draw = lambda: z[torch.randint(len(z), (batch,), generator=g)]  # (batch, 128, 50)
    rvq.init_(torch.cat([draw() for _ in range(-(-rvq.init_vectors // (batch * 50)))]))
    held = z[:100]
    def error(): # stage 1's quantization error on fixed latents, without learning
        rvq.eval(); e = rvq(held).stats.error[0]; rvq.train(); return e
    start, replaced, acc = error(), [], UsageAccumulator(cfg.n_q, cfg.codebook_size)
    for s in range(steps):
        out = rvq(draw())
        replaced.append(out.stats.replaced)
        if s >= steps - 100: acc.update(out.codes)
    late = torch.stack(replaced[-100:]).float().mean(0)  # (n_q,) codes replaced per step in steady state
    assert (late < 0.005 * cfg.codebook_size).all(), late
    dups = [duplicate_codes(s.codebook.embed) for s in rvq.stages]
    assert max(dups) < 0.01 * cfg.codebook_size, dups
    assert (acc.compute().utilization > 0.95).all(), acc.compute().utilization  # the codes are all in use
    assert error() < start  # the EMA improves on the k-means start
