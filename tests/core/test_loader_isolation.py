"""A build imports its service module in isolation, even when a module of the same name
(every example calls it "service") was imported before from another bento."""

from pathlib import Path

from jubako.loader import import_service

SERVICE = '''
import jubako


@jubako.service(name="{name}")
class {cls}:
    @jubako.api
    def echo(self, text: str) -> str:
        return text
'''


def test_isolated_import_ignores_a_same_named_module_imported_before(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name, cls in ((first, "first", "First"), (second, "second", "Second")):
        folder.mkdir()
        (folder / "service.py").write_text(SERVICE.format(name=name, cls=cls))
    import sys

    earlier = sys.modules.pop("service", None)  # what other tests left there
    try:
        assert import_service(first, "service:First").name == "first"  # stays in sys.modules
        assert import_service(second, "service:Second", isolated=True).name == "second"
        assert sys.modules["service"].__file__ == str(first / "service.py")  # put back as it was
    finally:
        sys.modules.pop("service", None)
        if earlier is not None:
            sys.modules["service"] = earlier
