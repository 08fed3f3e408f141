"""Pure builders: `build_<kind>(spec, ctx) -> dict`, and `desired_children` planning the whole set."""

from infergate_operator.builders.children import ChildRef, Plan, UnsupportedStrategyError, desired_children

__all__ = ["ChildRef", "Plan", "UnsupportedStrategyError", "desired_children"]
