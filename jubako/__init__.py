"""jubako: build, store, ship and serve ML models as bentos."""

__version__ = "0.1.0"
