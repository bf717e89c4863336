"""The Pixyz README quick start, with only the imports changed (shared by several tests)."""

import torch
from torch import nn
from torch.nn import functional as F

from pixyz_like.distributions import Bernoulli, Normal


def make(x_dim=784, z_dim=64, hidden=512):
    class Inference(Normal):
        def __init__(self):
            super(Inference, self).__init__(var=["z"], cond_var=["x"], name="q")  # noqa: UP008 (verbatim)
            self.fc1 = nn.Linear(x_dim, hidden)
            self.fc2 = nn.Linear(hidden, hidden)
            self.fc31 = nn.Linear(hidden, z_dim)
            self.fc32 = nn.Linear(hidden, z_dim)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            h = F.relu(self.fc2(h))
            return {"loc": self.fc31(h), "scale": F.softplus(self.fc32(h))}

    class Generator(Bernoulli):
        def __init__(self):
            super(Generator, self).__init__(var=["x"], cond_var=["z"], name="p")  # noqa: UP008 (verbatim)
            self.fc1 = nn.Linear(z_dim, hidden)
            self.fc2 = nn.Linear(hidden, hidden)
            self.fc3 = nn.Linear(hidden, x_dim)

        def forward(self, z):
            h = F.relu(self.fc1(z))
            h = F.relu(self.fc2(h))
            return {"probs": torch.sigmoid(self.fc3(h))}

    p = Generator()
    q = Inference()
    prior = Normal(loc=torch.tensor(0.), scale=torch.tensor(1.),
                   var=["z"], features_shape=[z_dim], name="p_{prior}")
    return p, q, prior
