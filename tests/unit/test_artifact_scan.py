"""The pickle scanner finds every carrier it claims to, and leaves the project's own formats alone."""

import gzip
import io
import json
import pickle
import zlib

import pytest
import torch
from safetensors.torch import save as dump_safetensors

from modelmill.artifact_scan import classify, scan


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def torch_zip(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_pickles_of_every_protocol_are_found(protocol):
    assert classify(pickle.dumps(Payload(), protocol=protocol)) == "pickle"


@pytest.mark.parametrize(
    ("blob", "what"),
    [
        (torch_zip({"w": torch.zeros(2)}), "torch pickle zip"),
        (gzip.compress(pickle.dumps(Payload())), "compressed pickle"),
        (zlib.compress(pickle.dumps(Payload(), protocol=0)), "compressed pickle"),
        (zlib.compress(torch_zip(Payload())), "compressed torch pickle zip"),
    ],
)
def test_archives_and_wrapped_pickles_are_found(blob, what):
    assert classify(blob) == what


@pytest.mark.parametrize(
    "blob",
    [
        dump_safetensors({"w": torch.arange(10.0)}),
        json.dumps({"a": [1, 2.5, "x"]}).encode(),
        b"A summary that ends with a period.",
        b"hello.",
        b"# markdown\n\n| a | b |\n",
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    ],
)
def test_the_projects_own_formats_are_not_flagged(blob):
    assert classify(blob) is None


def test_scan_reports_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(pickle.dumps([1, Payload()]))
    (tmp_path / "ok.json").write_text("{}")
    assert [f.path for f in scan(tmp_path)] == [str(tmp_path / "a" / "x.bin")]
