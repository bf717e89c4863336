"""Names and numbers print as sympy prints them (Pixyz's LaTeX), without sympy being imported by the library."""

import random
import subprocess
import sys

import pytest

from pixyz_like._latex import _symbol_latex, convert_latex_name, float_latex

sympy = pytest.importorskip("sympy")

USUAL = [
    "x",
    "z",
    "p",
    "q",
    "p_prior",
    "q_phi",
    "x_1",
    "z_t",
    "h_prev",
    "x^1",
    "a_x^1",
    "var_sub1__sup_sub2",
    "alpha",
    "Alpha",
    "Gamma",
    "omicron",
    "lamda",
    "Lamda",
    "khi",
    "Khi",
    "varphi",
    "aleph",
    "hbar",
    "q1",
    "p12",
    "alpha1",
    "alphahat",
    "xhat",
    "xbar",
    "xdot",
    "xddot",
    "xprime",
    "zbm",
    "xcal",
    "xnorm",
    "alphahatdotprime",
    "x_hat",
    "x__",
    "x_",
    "x^",
    "_x",
    "__x",
    "1x",
    "x1y",
    "x y",
    "\u03b1",
    "\u03b11",
    "",
    "hat",
    "Symbol",
    "mu_sigma",
    "sigma^2",
    "x_{t}",
    "z^{(1)}",
    "p_{prior}",
    "\\hat{x}",
    "x}",
    "{x",
    "x_t1",
    "x__1",
    "x^^",
    "x__y__z",
    "x_y_z",
    "theta_dec",
    "Theta",
]
ALPHABET = "abcxyzABXZ019_^ _" + "\u03b1"
PIECES = ["alpha", "Beta", "hat", "dot", "bm", "prime", "_", "__", "^", "1", "x", "norm", "omicron", "eth"]


def random_names(n: int) -> list[str]:
    rng = random.Random(0)
    names = []
    for _ in range(n):
        if rng.random() < 0.5:
            names.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8))))
        else:
            names.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4))))
    return names


@pytest.mark.parametrize("chunk", range(4))
def test_symbol_latex_matches_sympy(chunk):
    names = USUAL + random_names(4000)
    for name in names[chunk::4]:
        assert _symbol_latex(name) == sympy.latex(sympy.Symbol(name)), name


def test_convert_latex_name_escapes_on_top_of_sympy():
    assert convert_latex_name("q1") == "q_{1}"
    assert convert_latex_name("50%") == "50\\%"
    assert convert_latex_name("x}") == "x\\}"


def random_floats(n: int) -> list[float]:
    rng = random.Random(1)
    values = [
        0.5,
        1e-5,
        1e-4,
        1e-6,
        2.0,
        1e15,
        1e14,
        99999999999999.99,
        999999999999999.9,
        0.1,
        1 / 3,
        -0.25,
        0.0,
        -0.0,
        float("inf"),
        float("-inf"),
        float("nan"),
        1e-300,
        5e-324,
        1.7976931348623157e308,
        0.000123456789012345678,
        123456789.123456789,
        9.9999999999999995e-5,
        0.99999999999999999,
    ]
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            values.append(rng.uniform(-1, 1) * 10 ** rng.randint(-8, 18))
        elif kind < 0.7:
            values.append(round(rng.uniform(-100, 100), rng.randint(0, 6)))
        else:
            values.append(float.fromhex(f"0x1.{rng.getrandbits(52):013x}p{rng.randint(-60, 60)}"))
    return values


def test_float_latex_matches_sympy():
    for value in random_floats(3000):
        assert float_latex(value) == sympy.latex(sympy.Float(value)), repr(value)


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, torch\n"
        "before = set(sys.modules)\n"
        "import pixyz_like, pixyz_like.distributions, pixyz_like.losses, pixyz_like.models\n"
        "heavy = ('sympy', 'tensorboardX', 'IPython', 'tqdm', 'pixyz', 'matplotlib', 'wandb')\n"
        "heavy = [m for m in heavy if m in sys.modules and m not in before]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
