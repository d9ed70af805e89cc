"""funnel: a Pipedrive CSV export in, a monthly sales-funnel report out, on a laptop."""

__version__ = "0.1.0"
