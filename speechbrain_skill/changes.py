"""What changed between two flat records (stage records, preparation records)."""


def describe_changes(old, new):
    """Name the entries of two flat dicts that differ (``key: old -> new``).

    Arguments
    ---------
    old, new : dict
        Recorded and current values.

    Returns
    -------
    list of str

    Example
    -------
    >>> describe_changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    ['b: 2 -> 3', 'c: (absent) -> 4']
    """
    missing = "(absent)"
    return [
        f"{key}: {old.get(key, missing)} -> {new.get(key, missing)}"
        for key in sorted({*old, *new})
        if old.get(key, missing) != new.get(key, missing)
    ]
