"""Pixyz's module path ``pixyz.losses.adversarial_loss``.

>>> from pixyz_like.losses.adversarial_loss import AdversarialJensenShannon
>>> AdversarialJensenShannon.__name__
'AdversarialJensenShannon'
"""

from .adversarial import (
    AdversarialJensenShannon,
    AdversarialKullbackLeibler,
    AdversarialLoss,
    AdversarialWassersteinDistance,
)

__all__ = [
    "AdversarialLoss",
    "AdversarialJensenShannon",
    "AdversarialKullbackLeibler",
    "AdversarialWassersteinDistance",
]
