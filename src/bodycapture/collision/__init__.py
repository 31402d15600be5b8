"""Self-intersection search and the conic distance-field interpenetration penalty (SMPLify-X's E_C)."""

from .parts import DEFAULT_IGNORED_PAIRS, PartFilter, face_parts
from .penalty import CollisionSettings, CollisionTerm, conic_penalty
from .search import Collisions, all_pairs_collisions, find_collisions, triangles_intersect

__all__ = [
    "Collisions", "CollisionSettings", "CollisionTerm", "DEFAULT_IGNORED_PAIRS", "PartFilter",
    "all_pairs_collisions", "conic_penalty", "face_parts", "find_collisions", "triangles_intersect",
]  # fmt: skip
