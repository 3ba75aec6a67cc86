"""The reader's workstation: review a folder of ``tools/predict.py`` reports in the browser.

:class:`~xvfa_ext.review.store.ReviewStore` keeps the reviewed state on disk;
:func:`~xvfa_ext.review.app.create_app` serves it (``tools/review.py``).
"""

from .store import ReviewError, ReviewStore

__all__ = ["ReviewError", "ReviewStore"]
