"Tests of reconstruction losses, discriminators, adversarial and feature-matching losses and their weighting."
import math
import pytest
import torch
from rotvq_audio.losses import (MultiScaleMelLoss, MultiResolutionSTFTLoss, MultiPeriodDiscriminator,
                                MultiResolutionDiscriminator, Discriminator, discriminator_loss,
                                generator_adversarial_loss, feature_matching_loss, LossConfig, combine_losses,
                                CodecLoss, discriminator_step_loss, plot_spectrograms, ComplexSTFTLoss)
from rotvq_audio.metrics import si_sdr

torch.set_num_threads(2)
SR = 16000


def _speechy(B=2, T=8000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / SR
    f0 = 120 + 40 * torch.rand(B, 1, 1, generator=g)
    x = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6)) * 0.1
    return x + 0.005 * torch.randn(B, 1, T, generator=g)


def _small_disc():
    torch.manual_seed(0)
    return LossConfig.small(mpd_channels=(4, 8, 8, 8, 8), mrd_channels=4).build_discriminator()


def test_mel_loss_zero_and_monotone_in_noise():
    loss = MultiScaleMelLoss()
    x = _speechy()
    assert loss(x, x).item() == 0
    vals = [loss(x, x + s * torch.randn_like(x)).item() for s in (1e-3, 1e-2, 1e-1)]
    assert vals[0] < vals[1] < vals[2]


def test_mel_loss_rejects_mismatched_scales():
    with pytest.raises(ValueError, match="one n_mels per window"):
        MultiScaleMelLoss(windows=(32, 64), n_mels=(5,))


@pytest.mark.parametrize("loss_cls", [MultiScaleMelLoss, MultiResolutionSTFTLoss])
def test_reconstruction_losses_have_finite_gradients(loss_cls):
    x = _speechy()
    y = torch.zeros_like(x).requires_grad_()  # silence: the clamp/log must not produce NaN
    loss = loss_cls()(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(y.grad).all()
    y2 = (0.5 * x).requires_grad_()
    loss_cls()(x, y2).backward()
    assert torch.isfinite(y2.grad).all() and y2.grad.abs().sum() > 0


def test_stft_loss_zero_for_identical():
    x = _speechy()
    assert MultiResolutionSTFTLoss()(x, x).item() < 1e-6


def test_discriminator_shapes():
    x = torch.randn(3, 1, 4001)
    mpd = MultiPeriodDiscriminator(channels=(4, 8, 8, 8, 8))
    outs = mpd(x)
    assert len(outs) == 5
    for p, (logits, feats) in zip((2, 3, 5, 7, 11), outs):
        assert logits.shape[:2] == (3, 1) and logits.shape[-1] == p
        assert len(feats) == 6 and feats[-1] is logits
    mrd = MultiResolutionDiscriminator(channels=4)
    for logits, feats in mrd(x):
        assert logits.dim() == 4 and logits.shape[:2] == (3, 1) and len(feats) == 6
    assert len(Discriminator(mpd_channels=(4, 8, 8, 8, 8), mrd_channels=4)(x)) == 8


def test_discriminators_use_weight_norm():
    d = _small_disc()
    names = [n for n, _ in d.named_parameters()]
    assert any("parametrizations.weight.original0" in n for n in names)


def test_hinge_and_lsgan_on_known_logits():
    real, fake = [torch.tensor([2., 0.])], [torch.tensor([-2., 0.5])]
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(1.25)
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(3.125)
    assert generator_adversarial_loss(fake, "hinge").item() == pytest.approx(1.75)
    assert generator_adversarial_loss(fake, "lsgan").item() == pytest.approx(4.625)
    # averaged over discriminators: a second identical discriminator changes nothing
    assert discriminator_loss(real * 2, fake * 2, "hinge").item() == pytest.approx(1.25)
    # perfect discriminator outputs give zero loss in both formulations
    assert discriminator_loss([torch.ones(3)], [torch.full((3,), -1.)], "hinge").item() == 0
    assert discriminator_loss([torch.ones(3)], [torch.zeros(3)], "lsgan").item() == 0
    with pytest.raises(ValueError, match="'wgan'"):
        discriminator_loss(real, fake, "wgan")


def test_feature_matching():
    r = [[torch.ones(2, 3), 10 * torch.ones(4)]]
    f = [[torch.zeros(2, 3), 9 * torch.ones(4)]]
    assert feature_matching_loss(r, f, normalize=False).item() == pytest.approx(1.0)
    assert feature_matching_loss(r, f).item() == pytest.approx((1 + 0.1) / 2)
    rg = [[torch.ones(2, 3, requires_grad=True)]]
    fg = [[torch.zeros(2, 3, requires_grad=True)]]
    feature_matching_loss(rg, fg).backward()
    assert rg[0][0].grad is None and fg[0][0].grad is not None  # real features are targets


def test_combine_losses_warmup_and_weights():
    cfg = LossConfig(mel=2.0, adversarial=3.0, feature_matching=5.0, quantizer=0.5, adv_start_step=100)
    parts = {"mel": torch.tensor(1.0), "adversarial": torch.tensor(1.0), "feature_matching": torch.tensor(1.0),
             "quantizer/commitment": torch.tensor(2.0)}
    total, logged = combine_losses(parts, cfg, step=99)
    assert total.item() == pytest.approx(2 + 1)
    total, logged = combine_losses(parts, cfg, step=100)
    assert total.item() == pytest.approx(2 + 3 + 5 + 1)
    assert logged["total"] == pytest.approx(11) and logged["quantizer/commitment"] == 2.0
    with pytest.raises(ValueError, match="'perceptual'"):
        combine_losses({"perceptual": torch.tensor(1.)}, cfg, 0)


def test_loss_config_round_trip_and_validation():
    cfg = LossConfig.small(adv_kind="lsgan", adv_start_step=5)
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    import json
    assert LossConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="mell"):
        LossConfig.from_dict({"mell": 1})
    with pytest.raises(ValueError, match="hinge"):
        LossConfig(adv_kind="bce")


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_codec_loss_and_discriminator_step_are_finite(kind):
    cfg = LossConfig.small(stft=1.0, adv_kind=kind, mpd_channels=(4, 8, 8, 8, 8), mrd_channels=4)
    torch.manual_seed(0)
    crit, disc = CodecLoss(cfg), cfg.build_discriminator()
    x = _speechy(T=4000)
    w = torch.nn.Parameter(torch.tensor(0.3))
    out = crit(x, w * x + 0.01 * torch.randn_like(x), {"commitment": torch.tensor(0.2)}, step=0, discriminator=disc)
    assert set(out.parts) == {"mel", "stft", "quantizer/commitment", "adversarial", "feature_matching", "total"}
    out.total.backward()
    assert torch.isfinite(out.total) and torch.isfinite(w.grad)
    disc.zero_grad(set_to_none=True)  # the generator's backward reaches the discriminator too; the trainer zeroes it
    d = discriminator_step_loss(disc, x, w * x, kind)
    d.backward()
    grads = [p.grad for p in disc.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_codec_loss_before_warmup_skips_discriminator():
    crit = CodecLoss(LossConfig(adv_start_step=10))
    x = _speechy(T=4000)

    class Boom(torch.nn.Module):
        def forward(self, x): raise AssertionError("discriminator must not run before adv_start_step")

    out = crit(x, 0.5 * x, step=3, discriminator=Boom())
    assert set(out.parts) == {"mel", "total"}


def test_plot_spectrograms():
    import matplotlib; matplotlib.use("Agg")
    x = _speechy(B=1)
    fig = plot_spectrograms(x, x[0, 0].numpy() * 0.5)
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "input"
    import matplotlib.pyplot as plt; plt.close(fig)


def _fit_waveform(loss, x, steps=300):
    "Optimise a free waveform from noise against `loss(x, y)`; the SI-SDR it reaches."
    torch.manual_seed(0)
    y = (0.05 * torch.randn_like(x)).requires_grad_(True)
    opt = torch.optim.Adam([y], 5e-3)
    for _ in range(steps):
        opt.zero_grad(); loss(x, y).backward(); opt.step()
    return float(si_sdr(x, y.detach()))

def test_complex_stft_loss_recovers_the_waveform_where_mel_does_not():
    x = _speechy(B=1, T=4000)
    complex_db, mel_db = _fit_waveform(ComplexSTFTLoss(), x), _fit_waveform(MultiScaleMelLoss(), x)
    assert complex_db > 10 and mel_db < 0, (complex_db, mel_db)  # the phase is learned only with the complex term

def test_codec_loss_weights_the_waveform_terms():
    x = _speechy(); y = x + 0.01 * torch.randn_like(x)
    out = CodecLoss(LossConfig(complex_stft=45, waveform=2, adversarial=0, feature_matching=0))(x, y)
    assert set(out.parts) == {"mel", "complex_stft", "waveform", "total"}
    expect = 15 * out.parts["mel"] + 45 * out.parts["complex_stft"] + 2 * out.parts["waveform"]
    assert out.parts["total"] == pytest.approx(expect, rel=1e-5)
    assert out.parts["waveform"] == pytest.approx(float((y - x).abs().mean()), rel=1e-5)
