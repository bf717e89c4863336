"""``DatasetNotFoundError`` is one of the named errors (``pixyz_like.errors``), and still importable
from ``pixyz_like.datasets`` where the examples catch it."""

from __future__ import annotations

import pytest

import pixyz_like.datasets as datasets
from pixyz_like.errors import DatasetNotFoundError, PixyzLikeError


def test_the_dataset_error_is_a_named_error_and_a_file_not_found_error():
    assert datasets.DatasetNotFoundError is DatasetNotFoundError
    assert issubclass(DatasetNotFoundError, PixyzLikeError)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_an_empty_folder_without_download_raises_it(tmp_path):
    with pytest.raises(PixyzLikeError, match="MNIST is not under") as caught:
        datasets.load_mnist(tmp_path, download=False)
    assert isinstance(caught.value, FileNotFoundError)
