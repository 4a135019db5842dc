import json
import logging

import pytest

from jubako import logs


def test_json_lines_carry_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    try:
        logging.getLogger("jubako.test").info("batch done %d", 3, extra={"api": "predict", "items": 3})
        logging.getLogger("jubako.test").debug("hidden")
        line = capsys.readouterr().err.strip()
        event = json.loads(line)
        assert event["msg"] == "batch done 3" and event["level"] == "info"
        assert event["api"] == "predict" and event["items"] == 3 and event["logger"] == "jubako.test"
        assert "\n" not in line
    finally:
        logging.getLogger().handlers.clear()


def test_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("DEBUG", "text")
    try:
        logging.getLogger("jubako.test").debug("hello")
        assert "DEBUG jubako.test: hello" in capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()


def test_cli_commands_keep_library_info_off_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(fmt="json", default="WARNING")
    try:
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logging.getLogger("httpx").info("HTTP Request: GET ...")
        assert capsys.readouterr().err == ""
    finally:
        logging.getLogger().handlers.clear()
