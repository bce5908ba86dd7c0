"""kxnet's models from other programs: torch.hub through the repository's hubconf.py, and
spandrel (ComfyUI's and chaiNNer's loader) through kxnet.integrations.spandrel."""

import copy
import enum
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
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


# ------------------------------------------------------------------------------- spandrel

def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """``torchvision``, ``.transforms`` and ``.transforms.functional`` as far as importing
    spandrel 0.4.2 needs them: its LaMa and RestoreFormer modules import ``rotate``,
    ``normalize`` and ``InterpolationMode``. kxnet runs neither; calling them raises."""
    def missing(*args, **kwargs):
        raise NotImplementedError("torchvision is not installed (a test's stand-in)")

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    tv, tr, fn = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms",
                                                 "torchvision.transforms.functional"))
    fn.InterpolationMode, fn.rotate, fn.normalize = InterpolationMode, missing, missing
    tv.transforms, tr.functional = tr, fn
    return {m.__name__: m for m in (tv, tr, fn)}


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:   # missing, or a wheel built for another torch
        return False
    return True


@pytest.fixture(scope="module")
def sp():
    """spandrel and kxnet.integrations.spandrel, with the torchvision stand-in only where the
    real one does not import. Afterwards every module imported here under those names is
    dropped again (the stand-in, spandrel, the integration), so no other test module sees them."""
    before = set(sys.modules)
    if not _torchvision_imports():
        sys.modules.update(_torchvision_stand_in())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spandrel = pytest.importorskip("spandrel")
        from kxnet.integrations import spandrel as integration
        yield types.SimpleNamespace(spandrel=spandrel, integration=integration)
    finally:
        torch.set_num_threads(threads)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("torchvision", "spandrel") or name == "kxnet.integrations.spandrel":
                del sys.modules[name]
        if "kxnet.integrations.spandrel" not in before and "kxnet.integrations" in sys.modules:
            vars(sys.modules["kxnet.integrations"]).pop("spandrel", None)


@pytest.fixture(scope="module")
def registries(sp):
    """(spandrel's own registry, a copy with kxnet's architectures installed)."""
    plain = sp.spandrel.MAIN_REGISTRY.copy()
    ours = plain.copy()
    sp.integration.install(ours)
    return plain, ours


KXNET_IDS = ["kxnet.kxnet", "kxnet.dan", "kxnet.dcls", "kxnet.kenet_usrnet"]
TINY_KENET = {"channels": (8, 8, 8, 8), "fc": 16}


def _perturbed(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def _tiny(method):
    """(a small random model of each method kxnet reads in the authors' layout, what its
    spandrel architecture id is, how its .pth wraps the state dict)."""
    from kxnet.models import create_model

    torch.manual_seed(0)
    build = {
        "kxnet_x2": lambda: create_model("kxnet", scale=2, stages=2),
        "kxnet_kenet_x4": lambda: create_model("kxnet", scale=4, stages=1, estimator=TINY_KENET),
        "dan_x4": lambda: create_model("dan", scale=4, nf=16, nb=2, estimator_nf=16, estimator_blocks=1, loops=3),
        "dcls_x2": lambda: create_model("dcls", scale=2, nf=16, nb=1, ng=1, input_para=8, kernel_channels=4),
        "kenet_usrnet_x4": lambda: create_model("kenet_usrnet", scale=4, kenet=TINY_KENET,
                                                usrnet={"n_iter": 2, "nc": (8, 8, 8, 8), "nb": 1, "h_nc": 8}),
    }
    return _perturbed(build[method]())


TINY_IDS = {"kxnet_x2": "kxnet.kxnet", "kxnet_kenet_x4": "kxnet.kxnet", "dan_x4": "kxnet.dan",
            "dcls_x2": "kxnet.dcls", "kenet_usrnet_x4": "kxnet.kenet_usrnet"}


def _authors_pth(method, tmp_path) -> Path:
    """The method's state dict as the authors' code saves it (the KXNet one nested under
    ``params`` with DataParallel's ``module.`` prefix, as training frameworks write them)."""
    state = _tiny(method).state_dict()
    if method == "kxnet_x2":
        state = {"params": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / f"{method}.pth"
    torch.save(state, path)
    return path


def _lr(h, w, seed=1):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _kxnets_own(model, x):
    """kxnet's own path on the image ``x``: the Upscaler, untiled, one kernel, PyTorch backend."""
    from kxnet.inference.upscaler import Upscaler
    from kxnet.io import Image

    image = Image(rgb=x[0].permute(1, 2, 0).numpy().copy())
    result, kernel, _, _ = Upscaler(model, "cpu", tile=0, regions="off", backend="torch").run(image)
    return torch.from_numpy(result.rgb).permute(2, 0, 1)[None], kernel


def test_install_adds_kxnets_architectures_after_spandrels_own(sp, registries):
    plain, ours = registries
    own = [a.architecture.id for a in plain.architectures("detection")]
    assert [a.architecture.id for a in ours.architectures("detection")] == own + KXNET_IDS
    assert not set(own) & set(KXNET_IDS)
    # twice is harmless: nothing added, the same entries in the same order
    assert sp.integration.install(ours) == []
    assert [a.architecture.id for a in ours.architectures("detection")] == own + KXNET_IDS
    # the architecture objects are spandrel's public API, the same ones on every call
    arch = ours["kxnet.kxnet"].architecture
    assert isinstance(arch, sp.spandrel.Architecture) and arch.name == "KXNet"
    assert [s.architecture for s in sp.integration.supports()] == [ours[i].architecture for i in KXNET_IDS]


@pytest.mark.parametrize("name", sorted(read_manifest()))
def test_spandrel_loads_every_shipped_file(sp, registries, name):
    entry = read_manifest()[name]
    descriptor = sp.spandrel.ModelLoader(registry=registries[1]).load_from_file(entry.path)
    net = descriptor.model.net
    ours = kxnet.load_model(name)
    assert descriptor.architecture.id == "kxnet.kxnet" and type(net) is type(ours) and not net.training
    # the int8 file restored to float32 exactly as kxnet's loader does
    got, want = net.state_dict(), ours.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    # the config from the shapes; at ×4 the setting is not in them (only the unused initial bank)
    assert {**net.config.to_dict(), "setting": None} == {**ours.config.to_dict(), "setting": None}
    c = ours.config
    assert descriptor.purpose == "SR" and descriptor.scale == c.scale == entry.config["scale"]
    assert (descriptor.input_channels, descriptor.output_channels) == (3, 3)
    assert descriptor.tags[:3] == ["KXNet", f"{c.stages} stages", f"{c.kernel_size}×{c.kernel_size} kernels"]
    assert ("K⁰ from a KENet" in descriptor.tags) == (c.estimator is not None)
    assert descriptor.tiling == sp.spandrel.ModelTiling.DISCOURAGED
    assert descriptor.supports_half == descriptor.supports_bfloat16 == (c.estimator is None)
    assert (descriptor.size_requirements.minimum, descriptor.size_requirements.multiple_of) == (8, 1)


@pytest.mark.parametrize("name,size", [("kxnet_x2.setting2", (21, 26)), ("kxnet_x4.setting2", (17, 22))])
def test_spandrel_gives_the_image_of_kxnets_own_path(sp, registries, name, size):
    descriptor = sp.spandrel.ModelLoader(registry=registries[1]).load_from_file(read_manifest()[name].path)
    from kxnet.io import read_image, to_tensor

    x = to_tensor(read_image(Path(kxnet.__file__).parent / "examples" / "chart_x4.png").rgb)[..., 30:30 + size[0],
                                                                                             40:40 + size[1]]
    got = descriptor(x)
    want, kernel = _kxnets_own(name, x)
    s = descriptor.scale
    assert got.shape == want.shape == (1, 3, s * size[0], s * size[1]) and got.dtype == torch.float32
    assert 0 <= got.min() and got.max() <= 1
    assert (got - want).abs().max() <= 1e-5
    p = kxnet.load_model(name).config.kernel_size
    assert descriptor.model.last_kernel.shape == (1, p, p)
    assert abs(descriptor.model.last_kernel.sum().item() - 1) < 1e-5
    assert np.abs(descriptor.model.last_kernel[0].numpy() - kernel).max() <= 1e-5


@pytest.mark.parametrize("method", sorted(TINY_IDS))
def test_spandrel_loads_the_authors_layout(sp, registries, method, tmp_path):
    path = _authors_pth(method, tmp_path)
    descriptor = sp.spandrel.ModelLoader(registry=registries[1]).load_from_file(path)
    ours = kxnet.load_model(path)
    assert descriptor.architecture.id == TINY_IDS[method] and descriptor.scale == ours.config.scale
    assert descriptor.model.net.config == ours.config
    assert descriptor.tags[0] == kxnet.models.architecture_of(ours).label
    # the same image as kxnet's own path, on an odd size
    x = _lr(13, 11)
    got = descriptor(x)
    want, kernel = _kxnets_own(ours, x)
    assert got.shape == (1, 3, 13 * descriptor.scale, 11 * descriptor.scale)
    assert (got - want).abs().max() <= 1e-5
    if kernel is None:   # DCLS estimates an LR-space kernel, not an HR one
        assert descriptor.model.last_kernel is None and method.startswith("dcls")
    else:
        assert np.abs(descriptor.model.last_kernel[0].numpy() - kernel).max() <= 1e-5
    # the stated minimum runs as it is, with no padding; smaller inputs spandrel pads to it
    req = descriptor.size_requirements
    assert req.multiple_of == 1 and req.minimum == 8 and req.check(req.minimum, req.minimum)
    with torch.no_grad():
        assert descriptor.model(_lr(req.minimum, req.minimum)).shape[-1] == req.minimum * descriptor.scale
    assert descriptor(_lr(5, 6)).shape == (1, 3, 5 * descriptor.scale, 6 * descriptor.scale)


@pytest.mark.parametrize("method", sorted(TINY_IDS))
def test_half_and_bfloat16_are_stated_as_they_run(sp, registries, method, tmp_path):
    path = _authors_pth(method, tmp_path)
    loader = sp.spandrel.ModelLoader(registry=registries[1])
    descriptor = loader.load_from_file(path)
    x = _lr(12, 10)
    reference = descriptor(x)
    for dtype, stated in ((torch.float16, descriptor.supports_half), (torch.bfloat16, descriptor.supports_bfloat16)):
        if stated:
            got = loader.load_from_file(path).to(dtype)(x.to(dtype))
            assert got.dtype == dtype and (got.float() - reference).abs().max() < 0.05, dtype
        else:
            with pytest.raises(sp.spandrel.UnsupportedDtypeError):
                loader.load_from_file(path).to(dtype)
            net = copy.deepcopy(descriptor.model.net).to(dtype)
            with pytest.raises(RuntimeError), torch.no_grad():   # why it is not stated
                net(x.to(dtype))
    assert descriptor.supports_half == (method in ("kxnet_x2", "dan_x4"))


def test_files_that_are_not_kxnets_load_or_fail_as_before(sp, registries, tmp_path):
    plain, ours = registries
    from spandrel.architectures.ESRGAN import ESRGAN

    from kxnet.models import create_model

    esrgan = tmp_path / "RRDB_x2.pth"
    torch.save(_perturbed(ESRGAN(num_filters=8, num_blocks=1, scale=2)).state_dict(), esrgan)
    before, after = (sp.spandrel.ModelLoader(registry=r).load_from_file(esrgan) for r in (plain, ours))
    assert before.architecture.id == after.architecture.id == "ESRGAN"
    assert (before.scale, before.tags) == (after.scale, after.tags)
    x = _lr(9, 10)
    assert torch.equal(before(x), after(x))
    # junk, and kxnet's files that are not upscalers from the image alone (KENet, USRNet): unsupported either way
    junk = {"junk.pth": {"conv.weight": torch.zeros(3, 3, 3, 3), "step": torch.tensor(1)},
            "kenet.pth": create_model("kenet", scale=2, **TINY_KENET).state_dict(),
            "usrnet.pth": create_model("usrnet", scale=2, n_iter=2, nc=(8, 8, 8, 8), nb=1, h_nc=8).state_dict()}
    for name, state in junk.items():
        torch.save(state, tmp_path / name)
        for registry in (plain, ours):
            with pytest.raises(sp.spandrel.UnsupportedModelError):
                sp.spandrel.ModelLoader(registry=registry).load_from_file(tmp_path / name)


@pytest.mark.filterwarnings("ignore:torch.meshgrid")   # a spandrel architecture's, while it is built
def test_no_detection_claims_the_others_files(sp, registries):
    """spandrel's detects claim none of kxnet's state dicts (so kxnet's, tried last, see them),
    and kxnet's detection claims none of spandrel's architectures in their default
    configurations (those that build on the meta device)."""
    from kxnet.models import detect_architecture

    plain, ours = registries
    ours_only = [ours[i] for i in KXNET_IDS]
    states = {m: _tiny(m).state_dict() for m in TINY_IDS}
    for name, entry in read_manifest().items():
        states[name] = sp.spandrel.ModelLoader().load_state_dict_from_file(entry.path)   # int8 keys as stored
    for name, state in states.items():
        assert [a.architecture.id for a in plain.architectures("detection") if a.detect(state)] == [], name
    checked = 0
    for support in plain:
        module = importlib.import_module(f"spandrel.architectures.{support.architecture.id}")
        for cls in (getattr(module, n) for n in getattr(module, "__all__", [])):
            if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
                continue
            try:
                with torch.device("meta"):
                    state = cls().state_dict()
            except Exception:   # needs arguments or real tensors: not checked here
                continue
            assert detect_architecture(state) is None, support.architecture.id
            assert not any(s.detect(state) for s in ours_only), support.architecture.id
            checked += 1
            break
    assert checked >= 20


_DOCUMENTED = r"""
import sys
sys.path.insert(0, sys.argv[2])
from test_spandrel_hub import _torchvision_imports, _torchvision_stand_in
if not _torchvision_imports():
    sys.modules.update(_torchvision_stand_in())

import spandrel
import torch
from kxnet.integrations.spandrel import install

install()
install()                                   # harmless
descriptor = spandrel.ModelLoader().load_from_file(sys.argv[1])
lr = torch.rand(1, 3, 20, 24)
sr = descriptor(lr)
kernel = descriptor.model.last_kernel
print(descriptor.architecture.id, descriptor.scale, tuple(sr.shape), tuple(kernel.shape), round(kernel.sum().item(), 4))
"""


def test_the_documented_usage_with_spandrels_main_registry(sp):
    path = read_manifest()["kxnet_x4.setting2"].path
    assert path.name == "kxnet_x4_setting2.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _DOCUMENTED, str(path), str(REPO / "tests")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["kxnet.kxnet", "4", "(1,", "3,", "80,", "96)", "(1,", "21,", "21)", "1.0"]
