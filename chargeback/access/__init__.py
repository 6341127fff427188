"""Who may read what: the caller's identity, resolved to a scope, applied to every answer."""
