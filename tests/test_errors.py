"""Errors are named for what failed and keep the exit codes they had (2 bad input, 1 a failed check, 3 run time)."""

import pytest

from edgecls.core import errors


@pytest.mark.parametrize("cls,code,base", [
    (errors.BadInput, 2, errors.EdgeclsError), (errors.MissingDependency, 2, errors.EdgeclsError),
    (errors.RuntimeMissing, 2, errors.MissingDependency), (errors.SelfCheckFailed, 1, errors.CheckFailed),
    (errors.ConversionFailed, 1, errors.CheckFailed), (errors.ParityFailed, 1, errors.CheckFailed),
    (errors.IntegrityFailed, 1, errors.CheckFailed), (errors.RunFailed, 3, errors.EdgeclsError),
])
def test_each_error_keeps_its_exit_code(cls, code, base):
    assert issubclass(cls, base) and cls.exit_code == code


def test_a_missing_runtime_package_is_runtime_missing_naming_the_extra():
    from edgecls.runtimes import Runner

    class Absent(Runner):
        name, package, extra = "absent", "edgecls_no_such_package", "absent-extra"

    with pytest.raises(errors.RuntimeMissing, match=r"pip install 'edgecls\[absent-extra\]'"):
        Absent.import_package()


def test_a_bad_image_is_bad_input(tmp_path):
    from edgecls.core.images import BadImage, load_image

    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(BadImage) as e:
        load_image(tmp_path / "x.png", (8, 8), 3)
    assert isinstance(e.value, errors.BadInput) and e.value.exit_code == 2
