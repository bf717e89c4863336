"""What real Pixyz programs use beyond the docstrings, each reproduced in plain pixyz_like code.

Each test is a minimal reproduction of something a Pixyz notebook, test or third-party program does;
the expected values come from the maths (closed forms, torch.distributions) or from Pixyz itself.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import pixyz_like
from pixyz_like.distributions import Categorical, EmpiricalDistribution, MixtureModel, Normal
from pixyz_like.errors import MissingVariableError, ShapeError
from pixyz_like.losses import MMD, Expectation, KullbackLeibler

# Pixyz's module paths and the names a program imports from each (Pixyz 0.3.3's own exports).
MODULE_NAMES = {
    "distributions.distributions": ["Distribution", "DistributionBase", "MultiplyDistribution"],
    "distributions.exponential_distributions": [
        "Normal", "Bernoulli", "RelaxedBernoulli", "FactorizedBernoulli", "Categorical", "RelaxedCategorical",
        "Multinomial", "Dirichlet", "Beta", "Laplace", "Gamma", "DistributionBase",
    ],
    "distributions.special_distributions": ["Deterministic", "EmpiricalDistribution"],
    "distributions.custom_distributions": ["CustomProb"],
    "distributions.mixture_distributions": ["MixtureModel", "PosteriorMixtureModel"],
    "distributions.poe": ["ProductOfNormal", "ElementWiseProductOfNormal"],
    "distributions.moe": ["MixtureOfNormal"],
    "distributions.flow_distribution": ["TransformedDistribution", "InverseTransformedDistribution"],
    "losses.losses": ["Loss", "ValueLoss", "Parameter", "ConstantVar", "Expectation", "AddLoss", "NegLoss"],
    "losses.divergences": ["KullbackLeibler"],
    "losses.entropy": ["Entropy", "CrossEntropy"],
    "losses.adversarial_loss": [
        "AdversarialJensenShannon", "AdversarialKullbackLeibler", "AdversarialWassersteinDistance",
    ],
    "losses.mmd": ["MMD"],
    "losses.wasserstein": ["WassersteinDistance"],
    "losses.iteration": ["IterativeLoss"],
    "losses.pdf": ["LogProb", "Prob"],
    "losses.elbo": ["ELBO"],
    "flows.flows": ["Flow", "FlowList"],
    "flows.conv": ["ChannelConv"],
    "flows.coupling": ["AffineCoupling"],
    "flows.normalizations": ["BatchNorm1d", "BatchNorm2d", "ActNorm2d"],
    "flows.normalizing_flows": ["PlanarFlow"],
    "flows.operations": ["Squeeze", "Unsqueeze", "Permutation", "Shuffle", "Reverse", "Flatten", "Preprocess"],
    "layers.resnet": ["ResNet", "WNConv2d"],
    "layers.norm_util": ["WNConv2d"],
    "models.model": ["Model"],
    "models.vae": ["VAE"],
    "models.vi": ["VI"],
    "models.ml": ["ML"],
    "models.gan": ["GAN"],
    "autoregressions": [],
    "utils": [
        "get_dict_values", "delete_dict_values", "detach_dict", "replace_dict_keys", "replace_dict_keys_split",
        "tolist", "sum_samples", "epsilon", "set_epsilon", "FrozenSampleDict", "lru_cache_for_sample_dict",
        "set_cache_maxsize", "cache_maxsize", "print_latex", "convert_latex_name",
    ],
}


@pytest.mark.parametrize("module", sorted(MODULE_NAMES))
def test_every_pixyz_module_path_imports_and_exports_its_names(module):
    mod = importlib.import_module(f"pixyz_like.{module}")
    missing = [name for name in MODULE_NAMES[module] if not hasattr(mod, name)]
    assert not missing, f"pixyz_like.{module} lacks {missing}"


def test_module_paths_match_pixyz_where_pixyz_is_installed():
    pixyz = pytest.importorskip("pixyz")  # the test environment installs Pixyz 0.3.3 as the oracle
    del pixyz
    for module in MODULE_NAMES:
        theirs = importlib.import_module(f"pixyz.{module}")
        ours = importlib.import_module(f"pixyz_like.{module}")
        public = [n for n, v in vars(theirs).items() if isinstance(v, type) and v.__module__.startswith("pixyz.")
                  and not n.startswith("_") and v.__module__ == theirs.__name__]
        assert [n for n in public if not hasattr(ours, n)] == [], module


def test_utils_dict_helpers_behave_as_documented_by_pixyz():
    u = pixyz_like.utils
    d = {"a": 1, "b": 2, "c": 3}
    assert u.get_dict_values(d, ["b"]) == [2]
    assert u.get_dict_values(d, ["b", "d"], True) == {"b": 2}
    assert u.delete_dict_values(d, ["b", "d"]) == {"a": 1, "c": 3}
    assert u.replace_dict_keys(d, {"a": "x", "e": "y"}) == {"x": 1, "b": 2, "c": 3}
    assert u.replace_dict_keys_split({"a": 0, "b": 1}, {"a": "loc"}) == ({"loc": 0}, {"b": 1})
    assert u.sum_samples(torch.ones(2, 3, 4)).shape == (2,)
    assert u.sum_samples(torch.ones(2, 3), sum_dims=[]).shape == (2, 3)


def test_cache_helpers_are_accepted_and_cache_nothing():
    calls = []

    class Encoder(Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.linear = torch.nn.Linear(2, 2)

        @pixyz_like.utils.lru_cache_for_sample_dict()
        def get_params(self, params_dict=None, **kwargs):
            return super().get_params(params_dict, **kwargs)

        def forward(self, x):
            calls.append(1)
            return {"loc": self.linear(x), "scale": torch.ones_like(x)}

    q = Encoder()
    x = torch.zeros(3, 2)
    first = q.get_params({"x": x})["loc"]
    with torch.no_grad():
        q.linear.bias.fill_(5.0)
    second = q.get_params({"x": x})["loc"]  # same tensor: a cache would return the stale value
    assert len(calls) == 2 and torch.equal(second, torch.full((3, 2), 5.0)) and not torch.equal(first, second)


def test_set_epsilon_is_read_by_flows_built_afterwards():
    from pixyz_like.flows import BatchNorm1d

    old = pixyz_like.utils.epsilon()
    try:
        pixyz_like.utils.set_epsilon(1e-3)
        assert BatchNorm1d(2).eps == 1e-3
    finally:
        pixyz_like.utils.set_epsilon(old)
    with pytest.raises(ValueError):
        pixyz_like.utils.set_epsilon(-1.0)


def test_missing_variable_is_also_a_value_error():
    p = Normal(var=["x"], cond_var=["y"], loc="y", scale=1.0).replace_var(y="z")
    with pytest.raises(ValueError):
        p.get_params({"y": torch.ones(1)})
    assert issubclass(MissingVariableError, KeyError)


def test_mmd_over_the_data_marginal_takes_its_batch_from_the_data():
    q = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[3], name="p_{prior}")
    q_mg = (q * EmpiricalDistribution(["x"])).marginalize_var("x")
    assert q_mg.input_var == ["x"]
    x = torch.randn(500, 3) * 0.01
    # aggregate posterior = N(x, 1) with x ~ 0: the same as the prior, so MMD^2 is near 0 ...
    assert MMD(q_mg, prior, kernel="gaussian", sigma_sqr=2.0).eval({"x": x}).abs() < 0.02
    # ... and shifting the data by 3 makes it clearly positive
    assert MMD(q_mg, prior, kernel="gaussian", sigma_sqr=2.0).eval({"x": x + 3}) > 0.2


def test_mixture_posterior_prob_given_x_is_the_components_by_batch_table():
    comps = [Normal(loc=torch.tensor([m, m]), scale=torch.ones(2), var=["x"], name=f"p_{i}")
             for i, m in enumerate([-1.0, 0.0, 2.0])]
    weights = torch.tensor([0.2, 0.3, 0.5])
    p = MixtureModel(distributions=comps, prior=Categorical(probs=weights, var=["z"], name="p_{prior}"))
    x = torch.randn(7, 2)
    table = p.posterior().prob().eval({"x": x})
    assert table.shape == (3, 7)
    # responsibilities from the closed form: w_k N(x; m_k, I) / sum_j w_j N(x; m_j, I)
    logs = torch.stack([torch.distributions.Normal(torch.full((2,), m), 1.0).log_prob(x).sum(-1)
                        for m in (-1.0, 0.0, 2.0)]) + weights.log()[:, None]
    torch.testing.assert_close(table, torch.softmax(logs, dim=0))


def test_mixture_prior_may_share_the_observed_variable_name():
    # Pixyz's defaults give components and prior the same variable name "x".
    comps = [Normal(loc=0.0, scale=1.0), Normal(loc=1.0, scale=1.0)]
    mix = MixtureModel(comps, Categorical(probs=torch.tensor([1.0, 2.0])))
    x = torch.tensor([0.3])
    want = torch.logsumexp(torch.stack([torch.distributions.Normal(0.0, 1.0).log_prob(x) + torch.tensor(1 / 3).log(),
                                        torch.distributions.Normal(1.0, 1.0).log_prob(x) + torch.tensor(2 / 3).log()]),
                           dim=0)
    torch.testing.assert_close(mix.get_log_prob({"x": x}), want)


def test_expectation_eval_with_sample_mean_uses_the_mean():
    p = Normal(loc=torch.tensor([1.5]), scale=2.0, var=["x"])
    e = Expectation(p, p.log_prob())
    want = torch.distributions.Normal(1.5, 2.0).log_prob(torch.tensor(1.5))
    torch.testing.assert_close(e.eval({}, sample_mean=True), want.reshape(1))


def test_batch_n_option_sets_the_number_of_samples_of_a_model_without_inputs():
    q = Normal(loc=torch.zeros(2), scale=1.0, var=["z"], name="q")
    target = Normal(loc=torch.ones(2), scale=1.0, var=["z"], name="p")
    loss = KullbackLeibler(q, target, analytical=False)
    assert loss.eval(batch_n=8).shape == (8,)
    assert loss.eval(batch_size=5).shape == (5,)  # Pixyz ignored batch_size; here it is batch_n


def test_batch_n_contradicting_the_data_is_refused():
    q = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    e = Expectation(q, q.log_prob())
    with pytest.raises(ShapeError, match="batch_n=3"):
        e.eval({"x": torch.zeros(4, 1)}, batch_n=3)
    with pytest.raises(TypeError, match="batch_size"):  # a formula with no batch_n option still refuses it
        q.log_prob().eval({"x": torch.zeros(4, 1), "z": torch.zeros(4, 1)}, batch_size=4)
    with pytest.raises(TypeError, match="batch_size"):  # so does one with inputs: they give the batch
        e.eval({"x": torch.zeros(4, 1)}, batch_size=4)


def test_eval_test_mode_evaluates_networks_in_eval_mode_and_restores_them():
    class Dropped(Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.drop = torch.nn.Dropout(0.9)

        def forward(self, x):
            return {"loc": self.drop(x), "scale": torch.ones_like(x)}

    q = Dropped()
    x = {"x": torch.ones(200, 5), "z": torch.ones(200, 5)}
    exact = torch.distributions.Normal(1.0, 1.0).log_prob(torch.ones(200, 5)).sum(-1)
    torch.testing.assert_close(q.log_prob().eval(x, test_mode=True), exact)
    assert q.training and q.drop.training
    assert not torch.allclose(q.log_prob().eval(x), exact)  # dropout on again


def test_graph_visible_graph_and_options():
    pytest.importorskip("networkx")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], name="p_{prior}")
    p = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z"]) * prior
    assert sorted(p.graph.visible_graph().edges()) == [("$z$", "$x$")]
    assert sorted(p.graph.visible_graph(dotmode=True).nodes(data="texlbl")) == [("x", "$x$"), ("z", "$z$")]
    normal = Normal(var=["x"], loc=0.0, scale=1.0, name="p")
    graph = normal.graph
    normal.name = "q"
    assert graph.name == "q"
    with pytest.raises(TypeError):
        p.graph.set_option({"batch_size": 3}, ["z"])


@pytest.mark.parametrize("family", ["RelaxedBernoulli", "RelaxedCategorical"])
def test_relaxed_families_sample_mean_as_pixyz(family):
    import pixyz_like.distributions as pl

    probs = torch.tensor([0.2, 0.8])
    d = getattr(pl, family)(var=["x"], temperature=torch.tensor(0.5), probs=probs)
    # sample(sample_mean=True) is refused (no closed-form mean, Pixyz raised too) ...
    with pytest.raises(NotImplementedError):
        d.sample(sample_mean=True)
    # ... and sample_mean() reads the underlying probabilities (a classifier's prediction in M2)
    torch.testing.assert_close(d.sample_mean(), probs[None])
    pz = pytest.importorskip("pixyz.distributions")
    theirs = getattr(pz, family)(var=["x"], temperature=torch.tensor(0.5), probs=probs)
    torch.testing.assert_close(d.sample_mean(), theirs.sample_mean())


def test_mixture_sample_mean_is_the_mixture_mean_not_the_likeliest_component():
    # Pixyz returned the mean of the most probable component (1.0 here); E[x] = sum_k pi_k mu_k = 2/3.
    comps = [Normal(loc=0.0, scale=1.0), Normal(loc=1.0, scale=1.0)]
    mix = MixtureModel(comps, Categorical(probs=torch.tensor([1.0, 2.0]), var=["z"]))
    torch.testing.assert_close(mix.sample(sample_mean=True)["x"], torch.tensor([2.0 / 3.0]))
    draws = mix.sample(batch_n=20000)["x"]
    assert abs(draws.mean().item() - 2.0 / 3.0) < 0.05


def test_product_variable_order_follows_pixyz():
    # Pixyz's distributions notebook: p1*p2*p4*p6 prints p(x,y,a,z): each variable where it first
    # appears, conditions included, reading the factors in multiplication order.
    def make(lib):
        p1 = lib.Normal(loc="y", scale=1.0, var=["x"], cond_var=["y", "a"], name="p_{1}")
        p2 = lib.Normal(loc="x", scale=1.0, var=["z"], cond_var=["x", "y"], name="p_{2}")
        p4 = lib.Normal(loc=0.0, scale=1.0, var=["a"], name="p_{4}")
        p6 = lib.Normal(loc=0.0, scale=1.0, var=["y"], name="p_{6}")
        return p1 * p2 * p4 * p6, (p2 * p4) * p1

    import pixyz_like.distributions as ours

    got = [d.prob_joint_factorized_and_text for d in make(ours)]
    assert got[0] == "p_{1}(x,y,a,z) = p_{2}(z|x,y)p_{1}(x|y,a)p_{6}(y)p_{4}(a)"
    pz = pytest.importorskip("pixyz.distributions")
    assert got == [d.prob_joint_factorized_and_text for d in make(pz)]
