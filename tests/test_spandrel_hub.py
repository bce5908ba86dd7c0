"""kxnet's models from other programs: torch.hub through the repository's hubconf.py."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kxnet
from kxnet.models.zoo import read_manifest

REPO = Path(__file__).resolve().parents[1]


def _hubconf():
    spec = importlib.util.spec_from_file_location("kxnet_hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped_name(entry) -> str:
    """The shipped model a hub entry loads, read from its docstring's first ``name``."""
    return entry.__doc__.split("``")[1]


def test_hub_lists_every_shipped_model_with_a_docstring():
    hub = _hubconf()
    # torch.hub.list's rule (it reads GitHub repositories only): every public callable
    entries = {name: getattr(hub, name) for name in dir(hub) if callable(getattr(hub, name)) and name[0] != "_"}
    assert all(e.__doc__ and e.__doc__.strip() for e in entries.values())
    assert sorted(_shipped_name(e) for e in entries.values()) == sorted(read_manifest()), \
        "hubconf.py needs one entry per shipped model (src/kxnet/weights/manifest.json)"
    assert entries["kxnet_x4"] is hub.kxnet_x4 and _shipped_name(hub.kxnet_x4) == "kxnet_x4.setting2"
    page = (REPO / "docs" / "integrations.md").read_text()
    assert all(f"| `{name}` | `{_shipped_name(e)}` |" in page for name, e in entries.items()), \
        "docs/integrations.md's table of hub entries is stale"


def test_hub_model_is_the_packages_model():
    model = torch.hub.load(str(REPO), "kxnet_x4", source="local", verbose=False)
    ours = kxnet.load_model("kxnet_x4.setting2")
    assert not model.training and model.config == ours.config
    y = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = model(y), ours(y)
    assert got.sr.shape == (1, 3, 80, 96)
    assert torch.equal(got.sr, want.sr) and torch.equal(got.kernel, want.kernel)


@pytest.mark.parametrize("name", ["kxnet_x2", "kxnet_x3", "kxnet_x4_setting1", "kxnet_x4_photo"])
def test_each_hub_entry_loads_its_shipped_file(name):
    hub = _hubconf()
    model = getattr(hub, name)()
    ours = kxnet.load_model(_shipped_name(getattr(hub, name)))
    assert not model.training and model.config == ours.config
    got, want = model.state_dict(), ours.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


_NOT_INSTALLED = r"""
import sys
from pathlib import Path

class NotInstalled:  # the first `import kxnet` fails, as in a checkout that was never pip-installed
    def find_spec(self, name, path=None, target=None):
        if name == "kxnet":
            sys.meta_path.remove(self)
            raise ImportError("kxnet is not installed")

sys.meta_path.insert(0, NotInstalled())
import torch
model = torch.hub.load(sys.argv[1], "kxnet_x2", source="local", verbose=False)
import kxnet
assert Path(kxnet.__file__).resolve().is_relative_to(Path(sys.argv[1]) / "src"), kxnet.__file__
print(type(model).__name__, model.config.scale, model.training)
"""


def test_hub_works_from_a_checkout_without_install():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _NOT_INSTALLED, str(REPO)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["KXNet", "2", "False"]
