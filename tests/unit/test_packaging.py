"""What the Lambda package needs reaches it: schemas/ and the runtime pins."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_lambda_requirements_are_pinned_like_the_runtime_requirements():
    runtime, lam = _pins(ROOT / "requirements.txt"), _pins(ROOT / "chalice_app" / "requirements.txt")
    assert "chalice" not in lam  # Chalice ships its own runtime module into the zip
    for name, version in lam.items():
        assert runtime.get(name) == version, f"{name}: lambda {version} vs runtime {runtime.get(name)}"
    for direct in ("orjson", "fastjsonschema", "iso4217", "schwifty", "python-ulid", "cryptography", "stripe", "adyen"):
        assert direct in lam, f"{direct} missing from chalice_app/requirements.txt"


def test_vendor_link_brings_schemas_into_the_deployment_package():
    link = ROOT / "chalice_app" / "vendor" / "schemas"
    assert link.is_symlink(), "Chalice copies vendor/ into the zip root, following links"
    assert link.resolve() == (ROOT / "schemas").resolve()
    assert any((link / "events").glob("*.v1.json"))


def test_schema_loader_finds_schemas_in_the_lambda_layout(tmp_path, monkeypatch):
    # deployment.zip: app.py, chalicelib/ and (from vendor/) schemas/ side by side.
    import shutil
    import subprocess
    import sys
    shutil.copytree(ROOT / "chalice_app" / "chalicelib", tmp_path / "chalicelib")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    code = ("from chalicelib import schemas; d = schemas.schemas_dir(); "
            "print(d); assert len(schemas.catalogue()) > 10")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "schemas")


def test_the_lambda_package_runs_without_the_laptop_tooling(tmp_path):
    """app.py and every chalicelib module import from a copy holding only what deployment.zip holds
    (app.py, chalicelib/, schemas/): nothing Lambda runs reaches into laptop/ or payctl/."""
    import shutil
    import subprocess
    import sys
    shutil.copy(ROOT / "chalice_app" / "app.py", tmp_path / "app.py")
    shutil.copytree(ROOT / "chalice_app" / "chalicelib", tmp_path / "chalicelib")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    code = ("import importlib, pathlib, app\n"
            "mods = ['.'.join(p.with_suffix('').parts).removesuffix('.__init__')\n"
            "        for p in pathlib.Path('chalicelib').rglob('*.py')]\n"
            "for m in sorted(mods): importlib.import_module(m)\n"
            "import sys\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('laptop', 'payctl')]\n"
            "assert not bad, bad\n"
            "print(len(mods))")
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"), "TRACE_EXPORTER": "none"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.strip()) > 50
