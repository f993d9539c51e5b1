"""The balancer: one leader places submitted jobs on live workers; standbys wait for its lease."""

from jobbalancer.balancer.loop import Balancer
from jobbalancer.balancer.policies import BUILTIN_POLICIES, load_policy

__all__ = ["BUILTIN_POLICIES", "Balancer", "load_policy"]
