"""Archive download of a bento (tar of the self-contained layout)."""

from __future__ import annotations

from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from jubako.errors import JubakoError

from ..db.models import Version
from ..state import Registry


def archive_response(reg: Registry, db: Session, v: Version, compression: str) -> StreamingResponse:
    raise JubakoError("archive download is not available yet")
