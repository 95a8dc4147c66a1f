"""The registry of methods: name <-> config class <-> :class:`~codeal_jax.contract.Method`.

The package's methods register in ``codeal_jax/methods/__init__.py`` (one line
each); a method of your own registers with :func:`register` and from then on
works with ``estimate``, the study runner and the CLI like the built-in ones.
"""

from __future__ import annotations

from .contract import Method, MethodConfig

_BY_NAME: dict[str, Method] = {}
_BY_CONFIG: dict[type, Method] = {}


def register(method: Method) -> Method:
    """Adds ``method`` to the registry (re-registering the same ``Method`` is a no-op).

    Raises:
      ValueError: if its name or its config class is already taken by another method.
    """
    if not isinstance(method, Method):
        raise ValueError(f"register takes a codeal_jax.Method, got {type(method).__name__}")
    for taken, what in ((_BY_NAME.get(method.name), "name"), (_BY_CONFIG.get(method.config), "config class")):
        if taken is not None and taken != method:
            raise ValueError(f"the {what} of method {method.name!r} is already registered to {taken.name!r}")
    _BY_NAME[method.name] = method
    _BY_CONFIG[method.config] = method
    return method


def unregister(name: str) -> None:
    """Removes a method registered under ``name`` (for tests and notebooks)."""
    method = get(name)
    del _BY_NAME[name], _BY_CONFIG[method.config]


def get(name: str) -> Method:
    """The method registered as ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def method_of(config: MethodConfig) -> Method:
    """The method whose config class ``config`` is an instance of."""
    method = _BY_CONFIG.get(type(config))
    if method is None:
        raise ValueError(
            f"{type(config).__name__} is not the config of a registered method; "
            f"registered: {', '.join(m.config.__name__ for m in _BY_NAME.values())}"
        )
    return method


def names() -> tuple[str, ...]:
    """Registered method names, in registration order."""
    return tuple(_BY_NAME)


def paper_names() -> tuple[str, ...]:
    """The paper's six simulation methods, in the order of its tables."""
    return tuple(m.name for m in _BY_NAME.values() if m.paper)
