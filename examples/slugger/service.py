"""Turn titles into URL slugs: a bento that needs a package the runtime image lacks.

``python-slugify`` (module ``slugify``) is pure Python and not installed in the runtime image,
so ``jubako build`` infers and pins it, ``jubako serve`` refuses to start without it, and
``jubako serve --install`` (or the operator's init container) installs it for the bento.
"""

from __future__ import annotations

from slugify import slugify

import jubako


@jubako.service(name="slugger")
class Slugger:
    @jubako.api(batchable=True, max_batch_size=32, max_latency_ms=10)
    def slug(self, titles: list[str]) -> list[str]:
        """One lowercase ASCII slug per title ("Héllo, Wörld!" -> "hello-world")."""
        return [slugify(t) for t in titles]
