"""The fair comparison protocol (python -m bljust.protocol): equal tuning trials per method on dev,
choices frozen, then seeds at each chosen point, test scored once, one report."""
