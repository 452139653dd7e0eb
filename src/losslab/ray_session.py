"""Starting Ray, or joining a running cluster, for everything that spreads work over workers.

Both the study backend (:mod:`losslab.studies.backends.ray_backend`) and the spread maps
(:mod:`losslab.landscape.spread`) start Ray through :func:`start_ray`, so they agree on what
an absent address means: a new private instance on this machine (``address="local"``), never
one that ``ray start`` or ``RAY_ADDRESS`` left running, whose workers would outlive this
driver's death.
"""

from __future__ import annotations

from typing import Any

from losslab.errors import DependencyError

__all__ = ["start_ray"]


def start_ray(address: str | None = None, init_kwargs: dict[str, Any] | None = None
              ) -> tuple[Any, bool]:
    """``(ray, owns)``: the ray module, initialized, and whether this call started it (the
    caller then shuts it down when done). Already initialized: used as it is."""
    try:
        import ray
    except ImportError:
        raise DependencyError("spreading work over Ray needs ray: pip install 'losslab[all]' "
                              "(or pip install ray)") from None
    if ray.is_initialized():
        return ray, False
    ray.init(**{"include_dashboard": False, "log_to_driver": False,
                "address": address if address is not None else "local", **(init_kwargs or {})})
    return ray, True
