"""Printed formulas are Pixyz 0.3.3's text: the same objects built in both libraries print the same.

Each case is built twice from the same code, once with ``pixyz`` and once with ``pixyz_like``, and
the two texts must be equal. The differences we keep on purpose (docs/pixyz.md: sympy's canonical
form reordered, expanded and cancelled terms; REINFORCE prints the objective it computes) are in
``test_deliberate_differences``, with our text asserted and Pixyz's shown to differ.
"""

import pixyz.distributions as pzd
import pixyz.flows as pzf
import pixyz.losses as pzl
import pixyz.models as pzm
import pytest
import torch
from torch import nn, optim

import pixyz_like.distributions as pld
import pixyz_like.flows as plf
import pixyz_like.losses as pll
import pixyz_like.models as plm

LIBS = {"pixyz": (pzd, pzl, pzm, pzf), "ours": (pld, pll, plm, plf)}


def world(lib: str) -> dict:
    """The same distributions in one library: networks for q(z|x) and p(x|z) so models can train them."""
    D, L, M, F = LIBS[lib]

    class Inference(D.Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.net = nn.Linear(2, 2)

        def forward(self, x):
            return {"loc": self.net(x), "scale": torch.ones_like(x)}

    class Generator(D.Normal):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.net = nn.Linear(2, 2)

        def forward(self, z):
            return {"loc": self.net(z), "scale": torch.ones_like(z)}

    class Critic(D.Deterministic):
        def __init__(self):
            super().__init__(var=["t"], cond_var=["x"], name="d")
            self.net = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())

        def forward(self, x):
            return {"t": self.net(x)}

    return {
        "D": D, "L": L, "M": M, "F": F,
        "q": Inference(), "p": Generator(), "d": Critic(),
        "prior": D.Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}"),
        "prior2": D.Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_prior"),
        "data": D.Normal(loc=0., scale=1., var=["x"], features_shape=[2], name="p_{data}"),
        "f": D.Normal(loc="z", scale=1., var=["h"], cond_var=["z"], name="f"),
        "r": D.Normal(loc="h_prev", scale=1., var=["h"], cond_var=["h_prev"], name="r"),
        "alpha": D.Normal(loc=0., scale=1., var=["y"], features_shape=[2], name="alpha"),
        "q1": D.Normal(loc="y", scale=1., var=["x_1"], cond_var=["y", "z"], name="q1"),
        "hat": D.Normal(loc=0., scale=1., var=["z^{(1)}"], features_shape=[2], name="p_{1}"),
        "lp": D.Normal(loc=0., scale=1., var=["x"], features_shape=[1], name="p").log_prob(),
    }


def kl(w):
    return w["L"].KullbackLeibler(w["q"], w["prior"])


def e(w):
    return w["L"].Expectation(w["q"], w["p"].log_prob())


DISTRIBUTIONS = {
    "atomic": lambda w: w["q"],
    "sympy names": lambda w: w["alpha"],
    "superscript name": lambda w: w["hat"],
    "joint": lambda w: w["p"] * w["prior"],
    "joint, prior unconverted name": lambda w: w["p"] * w["prior2"],
    "joint named after the left factor": lambda w: w["q"] * w["f"],
    "joint, other order": lambda w: w["f"] * w["q"],
    "joint, prior first": lambda w: w["prior"] * w["p"],
    "joint named after an unconverted name": lambda w: w["prior2"] * w["p"],
    "joint of joints": lambda w: (w["p"] * w["prior"]) * w["alpha"],
    "joint onto a joint": lambda w: w["alpha"] * (w["p"] * w["prior"]),
    "two conditions": lambda w: w["q1"] * w["alpha"],
    "three factors": lambda w: w["q1"] * (w["alpha"] * w["prior"]),
    "three factors, left nested": lambda w: (w["q1"] * w["alpha"]) * w["prior"],
    "three factors, prior first": lambda w: w["prior"] * w["alpha"] * w["q1"],
    "replace_var atomic": lambda w: w["q"].replace_var(x="y"),
    "replace_var two": lambda w: w["q"].replace_var(z="w", x="v"),
    "replace_var joint": lambda w: (w["p"] * w["prior"]).replace_var(z="w"),
    "replace_var joint named q": lambda w: (w["q"] * w["f"]).replace_var(h="g"),
    "marginalize_var": lambda w: (w["p"] * w["prior"]).marginalize_var("z"),
    "marginalize_var named q": lambda w: (w["q"] * w["f"]).marginalize_var("z"),
    "marginalize_var conditioned": lambda w: (w["q1"] * w["alpha"]).marginalize_var("y"),
    "marginalize_var of four": lambda w: (w["p"] * w["prior"] * w["alpha"] * w["q1"]).marginalize_var(["z"]),
    # other families and composites
    "Bernoulli": lambda w: w["D"].Bernoulli(probs=torch.tensor([0.5]), var=["x"]),
    "Categorical": lambda w: w["D"].Categorical(probs=torch.tensor([0.5, 0.5]), var=["y"], name="p_{y}"),
    "Deterministic": lambda w: w["d"],
    "EmpiricalDistribution": lambda w: w["D"].EmpiricalDistribution(["x"]),
    "data times model": lambda w: w["q"] * w["D"].EmpiricalDistribution(["x"]),
    "ProductOfNormal": lambda w: w["D"].ProductOfNormal([w["p"], w["D"].Normal(loc="h", scale=1., var=["x"],
                                                                                 cond_var=["h"], name="p_{2}")]),
    "MixtureModel": lambda w: _mixture(w),
    "MixtureModel posterior": lambda w: _mixture(w).posterior(),
    "TransformedDistribution": lambda w: w["D"].TransformedDistribution(_base(w), w["F"].PlanarFlow(2), var=["x"]),
    "InverseTransformedDistribution": lambda w: w["D"].InverseTransformedDistribution(_base(w), w["F"].PlanarFlow(2),
                                                                                       var=["x"]),
}


def _mixture(w):
    D = w["D"]
    components = [D.Normal(loc=torch.tensor([float(i)]), scale=torch.tensor([1.]), var=["x"], name=f"p_{i}")
                  for i in range(2)]
    return D.MixtureModel(distributions=components, prior=D.Categorical(probs=torch.tensor([0.5, 0.5]), var=["z"],
                                                                        name="prior"))


def _base(w):
    return w["D"].Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"], name="p_{0}")


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_distributions_print_as_pixyz(name):
    theirs, ours = (DISTRIBUTIONS[name](world(lib)) for lib in ("pixyz", "ours"))
    assert ours.prob_joint_factorized_and_text == theirs.prob_joint_factorized_and_text
    assert ours.prob_text == theirs.prob_text
    assert str(ours).splitlines()[:2] == str(theirs).splitlines()[:2]  # "Distribution:" and the formula


def _iterative(w, step, **kw):
    return w["L"].IterativeLoss(step, max_iter=4, update_value={"h": "h_prev"}, **kw)


LOSSES = {
    # loss classes
    "LogProb": lambda w: w["L"].LogProb(w["p"]),
    "Prob": lambda w: w["L"].Prob(w["p"]),
    "KL": kl,
    "Entropy": lambda w: w["L"].Entropy(w["prior"]),
    "Entropy MC": lambda w: w["L"].Entropy(w["prior"], analytical=False),
    "CrossEntropy MC": lambda w: w["L"].CrossEntropy(w["q"], w["prior"]),
    "ELBO": lambda w: w["L"].ELBO(w["p"] * w["prior"], w["q"]),
    "Expectation": e,
    "Expectation S=3": lambda w: w["L"].Expectation(w["q"], w["p"].log_prob(), sample_shape=[3]),
    "expectation()": lambda w: w["p"].log_prob().expectation(w["q"]),
    "MMD": lambda w: w["L"].MMD(w["q"], w["prior"]),
    "Wasserstein": lambda w: w["L"].WassersteinDistance(w["data"], w["p"]),
    "ValueLoss int": lambda w: w["L"].ValueLoss(2),
    "ValueLoss negative": lambda w: w["L"].ValueLoss(-2),
    "ValueLoss float": lambda w: w["L"].ValueLoss(2.5),
    "ValueLoss tiny": lambda w: w["L"].ValueLoss(1e-5),
    "ValueLoss third": lambda w: w["L"].ValueLoss(1 / 3),
    "ValueLoss big": lambda w: w["L"].ValueLoss(1e16),
    "Parameter": lambda w: w["L"].Parameter("beta"),
    "Parameter subscript": lambda w: w["L"].Parameter("x_1"),
    "ConstantVar": lambda w: w["L"].ConstantVar(w["p"].log_prob(), {"z": torch.zeros(1, 2)}),
    "constant_var()": lambda w: w["p"].log_prob().constant_var({"z": 0}),
    "MinLoss": lambda w: w["L"].MinLoss(w["p"].log_prob(), w["q"].log_prob()),
    "MaxLoss": lambda w: w["L"].MaxLoss(w["p"].log_prob(), w["L"].ValueLoss(1)),
    "DataParalleledLoss": lambda w: w["L"].DataParalleledLoss(w["p"].log_prob() - w["q"].log_prob()),
    "AdversarialJensenShannon": lambda w: w["L"].AdversarialJensenShannon(w["data"], w["p"], w["d"],
                                                                           optimizer=optim.Adam),
    "AdversarialKullbackLeibler": lambda w: w["L"].AdversarialKullbackLeibler(w["data"], w["p"], w["d"],
                                                                               optimizer=optim.Adam),
    "AdversarialWassersteinDistance": lambda w: w["L"].AdversarialWassersteinDistance(w["data"], w["p"], w["d"],
                                                                                       optimizer=optim.Adam),
    "IterativeLoss": lambda w: _iterative(w, w["r"].log_prob()),
    "IterativeLoss t_max": lambda w: w["L"].IterativeLoss(w["r"].log_prob(), series_var=["x"],
                                                          update_value={"h": "h_prev"}),
    "IterativeLoss negated step": lambda w: _iterative(w, -w["r"].log_prob()),
    "IterativeLoss product step": lambda w: _iterative(w, 2 * w["r"].log_prob()),
    "IterativeLoss timestep_var": lambda w: _iterative(w, w["r"].log_prob(), timestep_var=["h_prev"]),
    "IterativeLoss multi-term step": lambda w: w["L"].IterativeLoss(kl(w) - e(w), max_iter=4, series_var=["x"]),
    "IterativeLoss mean": lambda w: _iterative(w, w["r"].log_prob()).mean(),
    "IterativeLoss times 2": lambda w: 2 * _iterative(w, w["r"].log_prob()),
    # algebra: signs, numbers, brackets
    "4.0 * -f": lambda w: 4.0 * -w["lp"],
    "-f * 4.0": lambda w: -w["lp"] * 4.0,
    "-(f * 4)": lambda w: -(w["lp"] * 4),
    "f * -2": lambda w: w["lp"] * (-2),
    "f * -2.5": lambda w: w["lp"] * (-2.5),
    "-2 * f": lambda w: -2 * w["lp"],
    "1e-5 * f": lambda w: 1e-5 * w["lp"],
    "-f / 2": lambda w: -w["lp"] / 2,
    "f / -2": lambda w: w["lp"] / (-2),
    "2 / f": lambda w: 2 / w["lp"],
    "f / (a + b)": lambda w: w["lp"] / (kl(w) + e(w)),
    "-mean": lambda w: -w["lp"].mean(),
    "mean of -": lambda w: (-w["lp"]).mean(),
    "beta (a - b)": lambda w: w["L"].Parameter("beta") * (kl(w) - e(w)),
    "a - b": lambda w: kl(w) - e(w),
    "a + 3": lambda w: kl(w) + 3,
    "3 - a": lambda w: 3 - kl(w),
    "a - 3": lambda w: kl(w) - 3,
    "a + (-3)": lambda w: kl(w) + (-3),
    "|a - b|": lambda w: (kl(w) - e(w)).abs(),
    "-|a - b|": lambda w: -(kl(w) - e(w)).abs(),
    "-max": lambda w: -w["L"].MaxLoss(w["lp"], kl(w)),
    "detach": lambda w: w["lp"].detach(),
    "mean(a - b)": lambda w: (kl(w) - e(w)).mean(),
    "-mean(ELBO)": lambda w: -w["L"].ELBO(w["p"] * w["prior"], w["q"]).mean(),
    # losses that print as another one keep its sign: - 2 E[...], not 2 (- E[...])
    "2 * Entropy MC": lambda w: 2 * w["L"].Entropy(w["prior"], analytical=False),
    "DataParalleledLoss * 3": lambda w: w["L"].DataParalleledLoss(-w["lp"]) * 3,
    "ConstantVar * -2": lambda w: w["L"].ConstantVar(-w["lp"], {}) * -2,
    # the model classes
    "VAE": lambda w: w["M"].VAE(w["q"], w["p"], regularizer=kl(w), optimizer_params={"lr": 1e-3}).loss_cls,
    "VAE 2 KL": lambda w: w["M"].VAE(w["q"], w["p"], regularizer=2 * kl(w), optimizer_params={"lr": 1e-3}).loss_cls,
    "VI": lambda w: w["M"].VI(w["p"] * w["prior"], w["q"], optimizer_params={"lr": 1e-3}).loss_cls,
    "ML": lambda w: w["M"].ML(w["p"], optimizer_params={"lr": 1e-3}).loss_cls,
}


@pytest.mark.parametrize("name", LOSSES)
def test_losses_print_as_pixyz(name):
    theirs, ours = (LOSSES[name](world(lib)) for lib in ("pixyz", "ours"))
    assert str(ours) == str(theirs)
    assert ours.loss_text == theirs.loss_text


KL_TEXT = r"D_{KL} \left[q(z|x)||p_{prior}(z) \right]"
E_TEXT = r"\mathbb{E}_{q(z|x)} \left[\log p(x|z) \right]"
SUM = r"\sum_{t=0}^{3} \log r(h|h_{prev})"
DELIBERATE = {
    # sympy sorted the terms of a sum and the factors of a product; we keep the written order
    "MC KL": (lambda w: w["L"].KullbackLeibler(w["q"], w["prior"], analytical=False),
              r"\mathbb{E}_{q(z|x)} \left[\log q(z|x) - \log p_{prior}(z) \right]"),
    "CrossEntropy analytical": (lambda w: w["L"].CrossEntropy(w["q"], w["prior"], analytical=True),
                                rf"H \left[ {{q(z|x)}} \right] + {KL_TEXT}"),
    "-b + a": (lambda w: -e(w) + kl(w), rf"- {E_TEXT} + {KL_TEXT}"),
    "beta KL": (lambda w: w["L"].Parameter("beta") * kl(w), rf"\beta {KL_TEXT}"),
    "IterativeLoss multi-term step, as written": (
        lambda w: w["L"].IterativeLoss(-e(w) + kl(w), max_iter=4, series_var=["x"]),
        rf"\sum_{{t=0}}^{{3}} \left(- {E_TEXT} + {KL_TEXT}\right)"),
    # sympy moved the sum last; written first, it is bracketed so the sum does not swallow a
    "sum times a": (lambda w: _iterative(w, w["r"].log_prob()) * w["L"].Parameter("a"), rf"\left({SUM}\right) a"),
    "sum plus a": (lambda w: _iterative(w, w["r"].log_prob()) + w["L"].Parameter("a"), rf"\left({SUM}\right) + a"),
    # sympy distributed numbers and signs over sums and merged quotients and powers
    "2 (a + b)": (lambda w: 2 * (w["lp"] + kl(w)), rf"2 \left(\log p(x) + {KL_TEXT}\right)"),
    "-(a + b)": (lambda w: -(w["lp"] + kl(w)), rf"- \left(\log p(x) + {KL_TEXT}\right)"),
    "(a + b) / 2": (lambda w: (w["lp"] + kl(w)) / 2, rf"\frac{{\log p(x) + {KL_TEXT}}}{{2}}"),
    "f f": (lambda w: w["lp"] * w["lp"], r"\log p(x) \log p(x)"),
    "(a / b) / c": (lambda w: (w["lp"] / kl(w)) / e(w), rf"\frac{{\frac{{\log p(x)}}{{{KL_TEXT}}}}}{{{E_TEXT}}}"),
    # sympy cancelled identical-looking terms (a non-zero KL printed E[0])
    "f - f": (lambda w: w["lp"] - w["lp"], r"\log p(x) - \log p(x)"),
    # composites print what they compute (Pixyz: p(x|y,z) in set order; the elementwise product as a PoE)
    "MixtureOfNormal": (lambda w: w["D"].MixtureOfNormal([w["p"], w["D"].Normal(loc="h", scale=1., var=["x"],
                                                                                 cond_var=["h"], name="p_{2}")]),
                        r"p(x|z,h) = 0.5p(x|z) + 0.5p_{2}(x|h)"),
    "ElementWiseProductOfNormal": (lambda w: w["D"].ElementWiseProductOfNormal(w["p"]),
                                   r"p(x|z) \propto p(x)\prod_{d} p(x|z)_{d}"),
    # names are converted everywhere (Pixyz left the PoE's prior expert's unconverted: p(x_1))
    "ProductOfNormal x_1": (lambda w: w["D"].ProductOfNormal([w["q1"]]),
                            r"p(x_{1}|y,z) \propto p(x_{1})q_{1}(x_{1}|y,z)"),
    # REINFORCE's value is the objective (Pixyz printed its surrogate)
    "REINFORCE": (lambda w: w["L"].REINFORCE(w["q"], w["p"].log_prob()),
                  r"\mathbb{E}^{REINFORCE}_{q(z|x)} \left[\log p(x|z) \right]"),
}


@pytest.mark.parametrize("name", DELIBERATE)
def test_deliberate_differences(name):
    build, text = DELIBERATE[name]

    def printed(obj):
        return getattr(obj, "prob_joint_factorized_and_text", None) or str(obj)

    assert printed(build(world("ours"))) == text
    assert printed(build(world("pixyz"))) != text


def test_names_that_pixyz_prints_as_invalid_latex_are_escaped():
    # Pixyz printed p(x}) and 50% (a LaTeX comment that swallows the rest of the formula).
    assert pld.Normal(loc=0., scale=1., var=["x}"], name="p").prob_text == r"p(x\})"
    assert pzd.Normal(loc=0., scale=1., var=["x}"], name="p").prob_text == r"p(x})"
    assert pld.Normal(loc=0., scale=1., var=["x"], name="50%").prob_text == r"50\%(x)"
    assert str(pll.Parameter("{beta")) == r"\{beta"
    joint = pld.Normal(loc="a&b", scale=1., var=["x"], cond_var=["a&b"], name="p") * pld.Normal(
        loc=0., scale=1., var=["a&b"], name="q_{1")
    assert joint.prob_joint_factorized_and_text == r"p(x,a\&b) = p(x|a\&b)q_\{1(a\&b)"
