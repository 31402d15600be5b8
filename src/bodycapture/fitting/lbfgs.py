"""Batched L-BFGS with a strong-Wolfe line search: B independent problems solved side by side.

Each problem b has its own parameters x_b (n values), loss f_b, curvature history, line search and
convergence state; one call of the objective evaluates all of them (their losses are independent, so
the gradient of sum_b f_b gives every g_b exactly), each at the point its own search needs next. A problem
does not wait for the others: one whose line search ends starts its next iteration at the next call, and
one that has converged stops moving while the others go on. This is what makes fitting B people at once
give the same answers as B single fits, bit for bit, in as many calls as the longest of them alone (until
2026-12-02 the problems went in lock-step, each iteration as long as its longest line search: coco_564's two
people 638 calls, now 520, 10 % less time; the same results).

The algorithm is the textbook one (Nocedal & Wright, Numerical Optimization, 2nd ed.: the L-BFGS update,
here in its compact form, eq. 7.24 after Byrd, Nocedal & Schnabel 1994, which gives the two-loop recursion's
direction; line search with bracketing and zoom, Algorithms 3.5 and 3.6, with safeguarded cubic
interpolation), written with per-problem masks instead of branches. Where a line search finds no
decrease, the problem forgets its curvature pairs and tries steepest descent before it stops, at most
twice per call (`max_restarts`; non-smooth terms such as the collision term mislead the pairs).

The optimiser's own arithmetic runs in numpy on the host, whatever device the objective runs on: its arrays are
(B, n) with n about 100, and a numpy operation on them costs a fraction of a small torch operation (1-3 against
2.5-5.5 µs on the 2-core VM); the iterate goes to the objective's device and (f, g) come back once per call.
About 250 of its operations per iteration took a fifth of a one-person fit in torch (docs/benchmarks.md,
Fitting speed). The L-BFGS direction's products stay in torch (`lbfgs_direction`, on the host arrays without copies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["LBFGSSettings", "LBFGSResult", "minimize", "lbfgs_direction"]

Objective = Callable[..., tuple[Tensor, Tensor]]  # x (B, n) -> (f (B,), g (B, n)); partial: (x (R, n), rows (R,))


@dataclass
class LBFGSSettings:
    max_iter: int = 30  # L-BFGS iterations (SMPLify-X: 30 outer steps x up to 30 inner iterations)
    history: int = 100  # SMPLify-X's history size
    ftol: float = 1e-7  # relative loss change that counts as converged
    gtol: float = 1e-5  # max |gradient| that counts as converged
    xtol: float = 1e-9  # max |step| that counts as converged
    c1: float = 1e-4  # sufficient decrease (Armijo)
    c2: float = 0.9  # curvature (strong Wolfe)
    max_ls: int = 25  # objective evaluations per line search
    max_restarts: int = 2  # times a problem may forget its history after a failed line search (see above)


@dataclass
class LBFGSResult:
    x: Tensor  # (B, n)
    f: Tensor  # (B,)
    iterations: Tensor  # (B,) iterations each problem made
    evaluations: int  # objective calls (each evaluates all problems, or with `partial` those still running)
    converged: Tensor  # (B,) bool
    failed: Tensor  # (B,) bool: the objective was not finite at the start


def _cubic_min(a, fa, ga, b, fb, gb):
    """Minimiser of the cubic through (a, fa, ga) and (b, fb, gb), safeguarded into [min, max] of a, b;
    the midpoint where the cubic has no real minimum."""
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - ga * gb
    d2 = np.sqrt(np.maximum(disc, 0)) * np.sign(b - a)
    denom = gb - ga + 2 * d2
    t = b - (b - a) * (gb + d2 - d1) / np.where(np.abs(denom) < 1e-30, 1.0, denom).astype(denom.dtype)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    ok = (disc >= 0) & np.isfinite(t) & (np.abs(denom) >= 1e-30)
    t = np.where(ok, np.clip(t, lo, hi), (a + b) / 2)
    # keep away from the ends so that the bracket shrinks
    margin = 0.1 * (hi - lo)
    return np.clip(t, lo + margin, hi - margin)


@dataclass
class _Search:
    """Each problem's line search in progress (rows of the batch; a problem starts its next search as soon as
    its last one ended, whatever the others are doing). Each point of a search is one (B, 3) row of (step, f,
    slope): the previous trial point and the two ends of the bracket, so that moving a point is one `where`."""

    d: np.ndarray  # (B, n) the direction
    dphi0: np.ndarray  # (B,) the slope at step 0
    d_max: np.ndarray  # (B,) max |d|
    prev: np.ndarray  # (B, 3) the previous trial point (step 0 at first)
    lo: np.ndarray  # (B, 3) the bracket's ends
    hi: np.ndarray
    bracketed: np.ndarray  # (B,) bool
    best: np.ndarray  # (B, 2) (step, f) of the best sufficient-decrease point, or the accepted one
    best_g: np.ndarray  # (B, n) its gradient
    a: np.ndarray  # (B,) the next trial step
    tried: np.ndarray  # (B,) int: evaluations made in this search

    def restart(self, rows: np.ndarray, f: np.ndarray, g: np.ndarray, d: np.ndarray, alpha: np.ndarray) -> "_Search":
        """A new search from (f, g) along d with first step alpha for the problems `rows` (B,) bool; the others
        keep theirs."""
        dphi0 = (g * d).sum(1)
        start = np.stack([np.zeros_like(f), f, dphi0], 1)
        r, r1 = rows[:, None], rows
        return _Search(np.where(r, d, self.d), np.where(r1, dphi0, self.dphi0),
                       np.where(r1, np.abs(d).max(1), self.d_max), np.where(r, start, self.prev),
                       np.where(r, start, self.lo), np.where(r, start, self.hi), self.bracketed & ~r1,
                       np.where(r, start[:, :2], self.best), np.where(r, g, self.best_g),
                       np.where(r1, alpha, self.a), np.where(r1, 0, self.tried))

    @staticmethod
    def empty(x: np.ndarray, f: np.ndarray) -> "_Search":
        z3 = np.zeros((len(x), 3), dtype=x.dtype)
        return _Search(np.zeros_like(x), np.zeros_like(f), np.zeros_like(f), z3, z3, z3,
                       np.zeros(len(x), dtype=bool), z3[:, :2], np.zeros_like(x), np.zeros_like(f),
                       np.zeros(len(x), dtype=np.int64))


def _search_step(ls: _Search, f: np.ndarray, searching: np.ndarray, a_eval: np.ndarray, f_a: np.ndarray,
                 g_a: np.ndarray, s: LBFGSSettings, resolution: float | None = None) -> tuple[_Search, np.ndarray]:
    """One evaluation of every searching problem's trial step `a_eval` (f_a, g_a) taken into its strong-Wolfe
    line search (Nocedal & Wright, Algorithms 3.5 and 3.6): -> (the searches, (B,) whether each has ended:
    accepted a step, shrunk its bracket to nothing, used its `max_ls` evaluations, or would next try a step
    whose predicted decrease is below `resolution` |f| (relative; None: never), which rounding cannot tell from
    no change; its result is `best`)."""
    nobody = np.zeros_like(searching)
    finite = np.isfinite(f_a) & np.isfinite(g_a).all(1)
    f_a = np.where(finite, f_a, np.inf).astype(f_a.dtype)
    dphi = (g_a * ls.d).sum(1)
    dphi = np.where(np.isfinite(dphi), dphi, 0).astype(dphi.dtype)
    trial = np.stack([a_eval, f_a, dphi], 1)
    armijo_fail = f_a > f + s.c1 * a_eval * ls.dphi0
    curvature_ok = np.abs(dphi) <= -s.c2 * ls.dphi0
    prev, lo, hi, bracketed = ls.prev, ls.lo, ls.hi, ls.bracketed

    # phase 1: not yet bracketed
    p1 = searching & ~bracketed
    to_zoom_a = p1 & (armijo_fail | ((ls.tried > 0) & (f_a >= prev[:, 1])))  # bracket [prev, trial]
    accept1 = p1 & ~to_zoom_a & curvature_ok
    to_zoom_b = p1 & ~to_zoom_a & ~accept1 & (dphi >= 0)  # bracket [trial, prev]
    extend = p1 & ~to_zoom_a & ~accept1 & ~to_zoom_b
    za, zb = to_zoom_a[:, None], to_zoom_b[:, None]
    lo = np.where(za, prev, np.where(zb, trial, lo))
    hi = np.where(za, trial, np.where(zb, prev, hi))

    # phase 2: zoom inside [lo, hi]
    p2 = searching & bracketed
    accept2 = nobody
    if p2.any():
        shrink_hi = p2 & (armijo_fail | (f_a >= lo[:, 1]))
        accept2 = p2 & ~shrink_hi & curvature_ok
        move_lo = p2 & ~shrink_hi & ~accept2
        flip = move_lo & (dphi * (hi[:, 0] - lo[:, 0]) >= 0)
        hi = np.where(shrink_hi[:, None], trial, np.where(flip[:, None], lo, hi))
        lo = np.where(move_lo[:, None], trial, lo)

    # the best sufficient-decrease point (in case the search runs out of evaluations), or the accepted one
    accepted = accept1 | accept2
    take = (searching & ~armijo_fail & (f_a < ls.best[:, 1])) | accepted
    best, best_g = np.where(take[:, None], trial[:, :2], ls.best), np.where(take[:, None], g_a, ls.best_g)
    bracketed = bracketed | to_zoom_a | to_zoom_b
    tiny = searching & bracketed & (np.abs(hi[:, 0] - lo[:, 0]) * ls.d_max < s.xtol)
    tried = ls.tried + searching
    ended = accepted | (tiny & ~accepted) | (searching & (tried >= s.max_ls))

    # the next trial: twice as far while not bracketed, else the cubic's minimiser inside the bracket
    prev = np.where(extend[:, None], trial, prev)
    a = np.where(extend, np.where(finite, 2 * a_eval, 0.5 * a_eval), ls.a).astype(a_eval.dtype)
    if bracketed.any():
        f_hi = np.where(np.isfinite(hi[:, 1]), hi[:, 1], lo[:, 1] + 1e30).astype(hi.dtype)
        a = np.where(bracketed, _cubic_min(lo[:, 0], lo[:, 1], lo[:, 2], hi[:, 0], f_hi, hi[:, 2]), a)
    # a zoom down to steps whose gain rounding hides: noise would decide the rest
    ended = ended | (searching & ~ended & _unresolved(a, ls.dphi0, f, resolution))
    return _Search(ls.d, ls.dphi0, ls.d_max, prev, lo, hi, bracketed, best, best_g, a, tried), ended


def lbfgs_direction(S: Tensor, Y: Tensor, g: Tensor, has_history: Tensor, SY: Tensor | None = None) -> Tensor:
    """H g for the L-BFGS inverse-Hessian approximation H of each problem: S, Y (B, c, n) the step and
    gradient-change pairs, oldest first (zero pairs where a history is shorter); g (B, n); has_history
    (B,) bool (H = I where False); SY (B, c, c) = S Y' where the caller keeps it (None: made here). H0 = gamma I
    with gamma = s'y / y'y of the newest pair.

    The compact form of Byrd, Nocedal & Schnabel (1994; Nocedal & Wright eq. 7.24), the same H as the
    two-loop recursion (Algorithm 7.4, tested) in a few batched products instead of 4c small steps:
        H g = gamma g + S R^-T ((D + gamma Y'Y) R^-1 S'g - gamma Y'g) - gamma Y R^-1 S'g
    with R the upper triangle of S'Y (R_ij = s_i'y_j, i <= j) and D its diagonal."""
    dtype = g.dtype  # in float64: the triangular solves lose digits in float32 where s'y spans decades
    S, Y, g = S.double(), Y.double(), g.double()
    s_new, y_new = S[:, -1], Y[:, -1]
    gamma = (s_new * y_new).sum(1) / (y_new * y_new).sum(1).clamp_min(1e-30)
    gamma = torch.where(has_history, gamma, torch.ones_like(gamma))[:, None]
    bmm = torch.bmm  # (what `@` runs for 3-D operands, without its reshapes: fewer operations per call)
    St, Yt = S.transpose(1, 2), Y.transpose(1, 2)
    SY = bmm(S, Yt) if SY is None else SY.double()  # (B, c, c)
    D = torch.diagonal(SY, dim1=1, dim2=2)  # (B, c): s_i'y_i, > 0 for stored pairs, 0 for empty slots
    R = torch.triu(SY)
    R.diagonal(dim1=1, dim2=2).copy_(torch.where(D == 0, 1.0, D))  # empty slots: 1 on the diagonal
    Sg, Yg = bmm(S, g[..., None]), bmm(Y, g[..., None])  # (B, c, 1)
    u = torch.linalg.solve_triangular(R, Sg, upper=True)  # R^-1 S'g
    inner = D[..., None] * u + gamma[..., None] * bmm(Y, bmm(Yt, u)) - gamma[..., None] * Yg
    top = torch.linalg.solve_triangular(R.transpose(1, 2), inner, upper=False)  # R^-T (...)
    h = gamma * g + bmm(St, top)[..., 0] - gamma * bmm(Yt, u)[..., 0]
    return torch.where(has_history[:, None], h, g).to(dtype)


def _relative_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(B,) |before - after| relative to the larger magnitude (at least 1)."""
    return np.abs(before - after) / np.maximum(np.maximum(np.abs(before), np.abs(after)), 1.0)


# The rounding of a loss summed from many float terms, in units of its dtype's epsilon relative to the loss: the
# trials of line searches at a minimum of our float32 objectives changed f by 10-30 of them (coco_564, 2026-12-03)
ROUNDING_EPS = 8


def _negligible(ls: _Search, rows: np.ndarray, f: np.ndarray, resolution: float | None) -> np.ndarray:
    """(B,) the problems `rows` whose new search predicts, to first order, a decrease below what can be told
    from rounding for its first step (`_unresolved`): converged. Without this test they spent the end of every
    stage on line searches that cannot succeed: the trials' changes are rounding noise, the search fails, the
    problem forgets its history and fails again along steepest descent (coco_564's two people: 5-11 evaluations
    per such search, about a fifth of their evaluations)."""
    return rows & _unresolved(ls.a, ls.dphi0, f, resolution)


def _unresolved(a: np.ndarray, dphi0: np.ndarray, f: np.ndarray, resolution: float | None) -> np.ndarray:
    """(B,) whether a step `a` along a line of slope `dphi0` predicts (to first order) a decrease of at most
    `resolution` |f| (at least `resolution`), which rounding cannot tell from no change; all False for None."""
    if resolution is None:
        return np.zeros(f.shape, dtype=bool)
    return -a * dphi0 <= resolution * np.maximum(np.abs(f), 1.0)


def _resolution(s: LBFGSSettings, dtype) -> float:
    """The smallest change of a loss, relative to it, that counts as one: ftol, or rounding where that is larger
    (-> max(ftol, ROUNDING_EPS eps))."""
    return max(s.ftol, ROUNDING_EPS * float(np.finfo(dtype).eps))


class _Calls:
    """The objective called from host arrays: x (R, n) and rows (R,) (None: every problem) go to the device as
    tensors, (f, g) come back as arrays of the iterate's dtype. With `partial`, only `rows` are evaluated (the
    others keep `f`, `g` given); without, every problem is, whatever `rows` says."""

    def __init__(self, device: torch.device, partial: bool):
        self.device, self.partial = device, partial

    def __call__(self, fun: Objective, x: np.ndarray, run: np.ndarray | None = None, f=None, g=None):
        B = len(x)
        rows = None if run is None or len(run) == B else run
        if not self.partial or rows is None:  # every problem (a partial objective is told so by rows None)
            args = (None,) if self.partial else ()
            f_a, g_a = fun(torch.from_numpy(x).to(self.device), *args)
            return self._host(f_a, x.dtype), self._host(g_a, x.dtype)
        f_r, g_r = fun(torch.from_numpy(x[rows]).to(self.device), torch.from_numpy(rows).to(self.device))
        f_a, g_a = f.copy(), g.copy()
        f_a[rows], g_a[rows] = self._host(f_r, x.dtype), self._host(g_r, x.dtype)
        return f_a, g_a

    @staticmethod
    def _host(t: Tensor, dtype) -> np.ndarray:
        return t.detach().cpu().numpy().astype(dtype, copy=False)


def minimize(fun: Objective, x0: Tensor, settings: LBFGSSettings | None = None,
             active: Tensor | None = None, partial: bool = False, refresh: Objective | None = None) -> LBFGSResult:
    """Minimise B independent objectives from x0 (B, n). `active` (B,) bool: problems to optimise
    (the others are returned unchanged).

    The problems do not wait for one another: each call of the objective evaluates every running problem's
    next trial point, whether it is in the middle of a line search or at the first step of a new one (a
    problem starts its next iteration as soon as its search ends). So a batch makes as many calls as its
    longest problem alone would, not the sum over iterations of each iteration's longest search, and each
    problem follows exactly the path it would follow alone.

    partial: `fun(x, rows)` can evaluate a subset of the problems (x (R, n) holds rows `rows` (R,) of
    the batch; rows is None for all). Only the running problems are then evaluated, so the finished ones
    cost nothing (the results are the same); otherwise every call evaluates all B problems (the finished
    ones at their final point).

    refresh: for an objective that holds something fixed along each line and updates it at each iterate
    (the collision term's colliding pairs: a pair appearing adds its penalty at once, a jump no line search
    can step over). Called like `fun` at the start and after every step, on the problems that moved; its
    values replace the line search's last ones, and a problem whose objective the refresh changed (by more
    than ftol) is not converged. Costs one evaluation per iteration.

    The objective gets tensors on x0's device and returns tensors there; the optimiser's arithmetic runs in
    numpy on the host (see the module's docstring)."""
    with np.errstate(all="ignore"):  # infinities and NaNs are tested for, as torch lets them through silently
        x, f, iters, evals, converged, failed = _minimize(fun, x0, settings or LBFGSSettings(), active, partial,
                                                           refresh)
    device = x0.device
    return LBFGSResult(torch.from_numpy(x).to(device), torch.from_numpy(f).to(device),
                       torch.from_numpy(iters).to(device), evals, torch.from_numpy(converged).to(device),
                       torch.from_numpy(failed).to(device))


def _minimize(fun, x0: Tensor, s: LBFGSSettings, active, partial: bool, refresh):
    call = _Calls(x0.device, partial)
    x = x0.detach().cpu().numpy().copy()
    B, n = x.shape
    # no search is made or zoomed below rounding, but with a refresh (the collision iterations): there a term far
    # below the loss's rounding (the penalty of a few shallow pairs) is what moves the body
    resolution = None if refresh is not None else _resolution(s, x.dtype)
    active = np.ones(B, dtype=bool) if active is None else active.detach().cpu().numpy().copy()
    f, g = call(refresh or fun, x)
    evals = 1
    failed = ~(np.isfinite(f) & np.isfinite(g).all(1))
    active &= ~failed
    m = max(1, min(s.history, s.max_iter))
    pairs = _History(B, m, n)
    count = np.zeros(B, dtype=np.int64)  # stored pairs per problem
    iters = np.zeros(B, dtype=np.int64)
    restarts = np.zeros(B, dtype=np.int64)
    converged = active & (np.abs(g).max(1) <= s.gtol)
    active &= ~converged
    if s.max_iter <= 0:
        active[:] = False
    ls = _Search.empty(x, f)
    if active.any():
        ls = ls.restart(active, f, g, *_directions(pairs, count, g, active))
        flat = _negligible(ls, active, f, resolution)
        converged |= flat
        active &= ~flat
    while active.any():
        # every running problem's trial point, in one call
        a_eval = np.where(active, ls.a, 0).astype(ls.a.dtype)
        trial_x = x + a_eval[:, None] * ls.d
        f_a, g_a = call(fun, trial_x, np.flatnonzero(active), f, g)
        evals += 1
        ls, ended = _search_step(ls, f, active, a_eval, f_a, g_a, s, resolution)
        if not ended.any():
            continue

        # the problems whose search ended make their step (or fail to)
        step, f_new, g_new = ls.best[:, 0], ls.best[:, 1], ls.best_g
        moved = ended & (step > 0) & np.isfinite(f_new)
        x_new = np.where(moved[:, None], x + step[:, None] * ls.d, x)
        s_vec, y_vec = x_new - x, np.where(moved[:, None], g_new, g) - g
        sy = (s_vec * y_vec).sum(1)
        store = moved & (sy > 1e-10)
        if store.any():
            pairs.store(store, s_vec, y_vec, int(count[store].max()) + 1)
        count = np.where(store, np.minimum(count + 1, m), count)
        f_old = f
        f = np.where(moved, f_new, f)
        g = np.where(moved[:, None], g_new, g)
        x = x_new
        iters += ended
        rel = _relative_change(f_old, f)
        changed = np.zeros_like(moved)
        if refresh is not None and moved.any():
            f_step = f
            f, g, fresh = _refreshed(call, refresh, x, f, g, moved)
            evals += 1
            changed = moved & (_relative_change(f_step, f) > s.ftol)  # the refresh changed the objective
            moved &= fresh
            active &= fresh  # a refresh that is not finite ends the problem where it stands
        small_step = np.abs(s_vec).max(1) <= s.xtol
        # a failed line search along a quasi-Newton direction (a non-smooth term, e.g. the collision
        # term's pairs appearing and vanishing, misleads the curvature pairs): forget the history and try
        # steepest descent next (at most max_restarts times: each restart can cost the stage's remaining
        # iterations); otherwise a failed search stops the problem
        unmoved = ended & active & ~moved
        stuck = unmoved
        if unmoved.any():
            retry = unmoved & (count > 0) & (restarts < s.max_restarts)
            restarts += retry
            pairs.forget(retry)
            count = np.where(retry, 0, count)
            stuck = unmoved & ~retry
        done = (np.abs(g).max(1) <= s.gtol) | (rel <= s.ftol) | small_step
        now = stuck | (ended & active & moved & ~changed & done)
        converged |= now
        active &= ~now & ~(ended & (iters >= s.max_iter))
        nxt = ended & active  # their next iteration starts at the next call
        if nxt.any():
            ls = ls.restart(nxt, f, g, *_directions(pairs, count, g, nxt))
            flat = _negligible(ls, nxt, f, resolution)
            converged |= flat
            active &= ~flat
    return x, f, iters, evals, converged, failed


def _refreshed(call: _Calls, refresh: Objective, x, f, g, active):
    """(f, g) with the active problems' values from `refresh`, and (B,) whether each is finite (the
    others keep their values)."""
    f_a, g_a = call(refresh, x, np.flatnonzero(active), f, g)
    fresh = np.isfinite(f_a) & np.isfinite(g_a).all(1)
    use = active & fresh
    return np.where(use, f_a, f), np.where(use[:, None], g_a, g), fresh | ~active


class _History:
    """Each problem's last m curvature pairs in time order, the newest last (zero pairs before a shorter history),
    float64, with SY (B, m, m) = S Y' kept up to date one row and column per stored pair: O(m n) a step instead of
    the O(c^2 n) of making S'Y anew at each direction (at 32 problems and 100 pairs about 4 ms a call, a sixth of
    the fit; docs/benchmarks.md, Fitting speed). Torch views of the host arrays for the products, which round
    alike whatever the batch (numpy's BLAS does not, see `_directions`)."""

    def __init__(self, B: int, m: int, n: int):
        self.S, self.Y, self.SY = np.zeros((B, m, n)), np.zeros((B, m, n)), np.zeros((B, m, m))
        self.tS, self.tY, self.tSY = (torch.from_numpy(a) for a in (self.S, self.Y, self.SY))

    def store(self, rows: np.ndarray, s: np.ndarray, y: np.ndarray, depth: int) -> None:
        """Append the pairs (s, y) (B, n) of the problems `rows` (B,) bool (the oldest drops out of a full
        history). depth: 1 + the most pairs any of them holds; only the newest `depth` slots move."""
        m = self.S.shape[1]
        w = m - min(depth, m)  # the window [w, m) holds every pair of these problems after the step
        ids = slice(None) if rows.all() else np.flatnonzero(rows)
        for a in (self.S, self.Y):
            a[ids, w : m - 1] = a[ids, w + 1 :]
        self.SY[ids, w : m - 1, w : m - 1] = self.SY[ids, w + 1 :, w + 1 :]
        self.S[ids, -1], self.Y[ids, -1] = s[ids], y[ids]
        t = ids if isinstance(ids, slice) else torch.from_numpy(ids)
        S, Y = self.tS[t, w:], self.tY[t, w:]  # (R, m - w, n)
        self.SY[ids, -1, w:] = torch.bmm(Y, S[:, -1, :, None])[..., 0].numpy()  # s_new'y_j
        self.SY[ids, w:, -1] = torch.bmm(S, Y[:, -1, :, None])[..., 0].numpy()  # s_i'y_new

    def forget(self, rows: np.ndarray) -> None:
        self.S[rows], self.Y[rows], self.SY[rows] = 0, 0, 0


def _directions(pairs: _History, count: np.ndarray, g: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The search direction -H g of the problems `rows` (B,) bool from each one's own history, oldest pair
    first (empty slots are zero pairs, which contribute nothing; only as many pairs as the longest history
    holds), steepest descent where that is not a descent direction; and the first step: the unit step, but
    at most 1 / |g|_1 for a problem without curvature pairs. Zero for the other rows.
    The products in torch: numpy's round differently with the number of pairs (BLAS's kernels change with the
    sizes), so a problem padded with the empty pairs of a longer history beside it would take another path than
    alone."""
    c = max(1, int(count.max()))
    r = -lbfgs_direction(pairs.tS[:, -c:], pairs.tY[:, -c:], torch.from_numpy(g), torch.from_numpy(count > 0),
                         pairs.tSY[:, -c:, -c:]).numpy()
    d = np.where(rows[:, None], r, 0).astype(g.dtype)
    descent = (g * d).sum(1) < 0
    d = np.where((rows & ~descent)[:, None], -g, d)  # reset to steepest descent if needed
    alpha = np.ones(len(g), dtype=g.dtype)
    if not (count > 0).all():
        alpha = np.where(count > 0, alpha, np.minimum(1.0 / np.maximum(np.abs(g).sum(1), 1e-12), 1.0)).astype(g.dtype)
    return d, alpha
