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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def _finite(t: Tensor) -> Tensor:
    """torch.isfinite in two operations instead of about ten (NaN and infinities compare False)."""
    return t.abs() < float("inf")


def _cubic_min(a, fa, ga, b, fb, gb):
    """Minimiser of the cubic through (a, fa, ga) and (b, fb, gb), safeguarded into [min, max] of a, b;
    the midpoint where the cubic has no real minimum."""
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - ga * gb
    d2 = torch.sqrt(disc.clamp_min(0)) * torch.sign(b - a)
    denom = gb - ga + 2 * d2
    t = b - (b - a) * (gb + d2 - d1) / torch.where(denom.abs() < 1e-30, torch.ones_like(denom), denom)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    ok = (disc >= 0) & _finite(t) & (denom.abs() >= 1e-30)
    t = torch.where(ok, t.clamp(lo, hi), (a + b) / 2)
    # keep away from the ends so that the bracket shrinks
    margin = 0.1 * (hi - lo)
    return t.clamp(lo + margin, hi - margin)


@dataclass
class _Search:
    """Each problem's line search in progress (rows of the batch; a problem starts its next search as soon as
    its last one ended, whatever the others are doing). Each point of a search is one (B, 3) row of (step, f,
    slope): the previous trial point and the two ends of the bracket, so that moving a point is one `where`
    (at B = 1 every torch operation costs microseconds, a few hundred per iteration)."""

    d: Tensor  # (B, n) the direction
    dphi0: Tensor  # (B,) the slope at step 0
    d_max: Tensor  # (B,) max |d|
    prev: Tensor  # (B, 3) the previous trial point (step 0 at first)
    lo: Tensor  # (B, 3) the bracket's ends
    hi: Tensor
    bracketed: Tensor  # (B,) bool
    best: Tensor  # (B, 2) (step, f) of the best sufficient-decrease point, or the accepted one
    best_g: Tensor  # (B, n) its gradient
    a: Tensor  # (B,) the next trial step
    tried: Tensor  # (B,) long: evaluations made in this search

    def restart(self, rows: Tensor, f: Tensor, g: Tensor, d: Tensor, alpha: Tensor) -> "_Search":
        """A new search from (f, g) along d with first step alpha for the problems `rows` (B,) bool; the others
        keep theirs."""
        dphi0 = (g * d).sum(1)
        start = torch.stack([torch.zeros_like(f), f, dphi0], 1)
        r, r1 = rows[:, None], rows
        return _Search(torch.where(r, d, self.d), torch.where(r1, dphi0, self.dphi0),
                       torch.where(r1, d.abs().amax(1), self.d_max), torch.where(r, start, self.prev),
                       torch.where(r, start, self.lo), torch.where(r, start, self.hi), self.bracketed & ~r1,
                       torch.where(r, start[:, :2], self.best), torch.where(r, g, self.best_g),
                       torch.where(r1, alpha, self.a), torch.where(r1, 0, self.tried))

    @staticmethod
    def empty(x: Tensor, f: Tensor) -> "_Search":
        z3 = x.new_zeros(len(x), 3)
        return _Search(torch.zeros_like(x), torch.zeros_like(f), torch.zeros_like(f), z3, z3, z3,
                       torch.zeros(len(x), dtype=torch.bool, device=x.device), z3[:, :2], torch.zeros_like(x),
                       torch.zeros_like(f), torch.zeros(len(x), dtype=torch.long, device=x.device))


def _search_step(ls: _Search, f: Tensor, searching: Tensor, a_eval: Tensor, f_a: Tensor, g_a: Tensor,
                 s: LBFGSSettings, resolution: float | None = None) -> tuple[_Search, Tensor, Tensor]:
    """One evaluation of every searching problem's trial step `a_eval` (f_a, g_a) taken into its strong-Wolfe
    line search (Nocedal & Wright, Algorithms 3.5 and 3.6): -> (the searches, (B,) whether each has ended:
    accepted a step, shrunk its bracket to nothing or used its `max_ls` evaluations; its result is `best`,
    (B,) those that ended because their next trial would predict a decrease below `resolution` |f| (relative;
    None: never), which rounding cannot tell from no change)."""
    nobody = torch.zeros_like(searching)
    finite = _finite(f_a) & _finite(g_a).all(1)
    f_a = torch.where(finite, f_a, torch.full_like(f_a, float("inf")))
    dphi = (g_a * ls.d).sum(1)
    dphi = torch.where(_finite(dphi), dphi, torch.zeros_like(dphi))
    trial = torch.stack([a_eval, f_a, dphi], 1)
    armijo_fail = f_a > f + s.c1 * a_eval * ls.dphi0
    curvature_ok = dphi.abs() <= -s.c2 * ls.dphi0
    prev, lo, hi, bracketed = ls.prev, ls.lo, ls.hi, ls.bracketed

    # phase 1: not yet bracketed (each phase is skipped when no problem is in it: the same result, fewer
    # operations; a search is usually in one phase at a time)
    p1 = searching & ~bracketed
    to_zoom_a = to_zoom_b = accept1 = extend = nobody
    if bool(p1.any()):
        to_zoom_a = p1 & (armijo_fail | ((ls.tried > 0) & (f_a >= prev[:, 1])))  # bracket [prev, trial]
        accept1 = p1 & ~to_zoom_a & curvature_ok
        to_zoom_b = p1 & ~to_zoom_a & ~accept1 & (dphi >= 0)  # bracket [trial, prev]
        extend = p1 & ~to_zoom_a & ~accept1 & ~to_zoom_b
        za, zb = to_zoom_a[:, None], to_zoom_b[:, None]
        lo = torch.where(za, prev, torch.where(zb, trial, lo))
        hi = torch.where(za, trial, torch.where(zb, prev, hi))

    # phase 2: zoom inside [lo, hi]
    p2 = searching & bracketed
    accept2 = nobody
    if bool(p2.any()):
        shrink_hi = p2 & (armijo_fail | (f_a >= lo[:, 1]))
        accept2 = p2 & ~shrink_hi & curvature_ok
        move_lo = p2 & ~shrink_hi & ~accept2
        flip = move_lo & (dphi * (hi[:, 0] - lo[:, 0]) >= 0)
        hi = torch.where(shrink_hi[:, None], trial, torch.where(flip[:, None], lo, hi))
        lo = torch.where(move_lo[:, None], trial, lo)

    # the best sufficient-decrease point (in case the search runs out of evaluations), or the accepted one
    accepted = accept1 | accept2
    take = (searching & ~armijo_fail & (f_a < ls.best[:, 1])) | accepted
    best, best_g = torch.where(take[:, None], trial[:, :2], ls.best), torch.where(take[:, None], g_a, ls.best_g)
    ended = accepted
    bracketed = bracketed | to_zoom_a | to_zoom_b
    any_bracketed = bool(bracketed.any())
    if any_bracketed:
        tiny = searching & bracketed & ((hi[:, 0] - lo[:, 0]).abs() * ls.d_max < s.xtol)
        ended = ended | (tiny & ~accepted)
    tried = ls.tried + searching.long()
    ended = ended | (searching & (tried >= s.max_ls))

    # the next trial: twice as far while not bracketed, else the cubic's minimiser inside the bracket
    prev = torch.where(extend[:, None], trial, prev)
    a = torch.where(extend, torch.where(finite, 2.0 * a_eval, 0.5 * a_eval), ls.a)
    if any_bracketed:
        f_hi = torch.where(_finite(hi[:, 1]), hi[:, 1], lo[:, 1] + 1e30)
        a = torch.where(bracketed, _cubic_min(lo[:, 0], lo[:, 1], lo[:, 2], hi[:, 0], f_hi, hi[:, 2]), a)
    # a zoom down to steps whose gain rounding hides: noise would decide the rest
    flat = searching & ~ended & _unresolved(a, ls.dphi0, f, resolution)
    ended = ended | flat
    return _Search(ls.d, ls.dphi0, ls.d_max, prev, lo, hi, bracketed, best, best_g, a, tried), ended, flat


def lbfgs_direction(S: Tensor, Y: Tensor, g: Tensor, has_history: Tensor) -> Tensor:
    """H g for the L-BFGS inverse-Hessian approximation H of each problem: S, Y (B, c, n) the step and
    gradient-change pairs, oldest first (zero pairs where a history is shorter); g (B, n); has_history
    (B,) bool (H = I where False). H0 = gamma I with gamma = s'y / y'y of the newest pair.

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
    SY = bmm(S, Yt)  # (B, c, c)
    D = torch.diagonal(SY, dim1=1, dim2=2)  # (B, c): s_i'y_i, > 0 for stored pairs, 0 for empty slots
    R = torch.triu(SY) + torch.diag_embed((D == 0).to(SY.dtype))  # empty slots: 1 on the diagonal
    Sg, Yg = bmm(S, g[..., None]), bmm(Y, g[..., None])  # (B, c, 1)
    u = torch.linalg.solve_triangular(R, Sg, upper=True)  # R^-1 S'g
    inner = D[..., None] * u + gamma[..., None] * bmm(Y, bmm(Yt, u)) - gamma[..., None] * Yg
    top = torch.linalg.solve_triangular(R.transpose(1, 2), inner, upper=False)  # R^-T (...)
    h = gamma * g + bmm(St, top)[..., 0] - gamma * bmm(Yt, u)[..., 0]
    return torch.where(has_history[:, None], h, g).to(dtype)


def _relative_change(before: Tensor, after: Tensor) -> Tensor:
    """(B,) |before - after| relative to the larger magnitude (at least 1)."""
    return (before - after).abs() / torch.maximum(torch.maximum(before.abs(), after.abs()), torch.ones_like(after))


# The rounding of a loss summed from many float terms, in units of its dtype's epsilon relative to the loss: the
# trials of line searches at a minimum of our float32 objectives changed f by 10-30 of them (coco_564, 2026-12-03)
ROUNDING_EPS = 8


def _negligible(ls: _Search, rows: Tensor, f: Tensor, resolution: float | None) -> Tensor:
    """(B,) the problems `rows` whose new search predicts, to first order, a decrease below what can be told
    from rounding for its first step (`_unresolved`): converged. Without this test they spent the end of every
    stage on line searches that cannot succeed: the trials' changes are rounding noise, the search fails, the
    problem forgets its history and fails again along steepest descent (coco_564's two people: 5-11 evaluations
    per such search, about a fifth of their evaluations)."""
    return rows & _unresolved(ls.a, ls.dphi0, f, resolution)


def _unresolved(a: Tensor, dphi0: Tensor, f: Tensor, resolution: float | None) -> Tensor:
    """(B,) whether a step `a` along a line of slope `dphi0` predicts (to first order) a decrease of at most
    `resolution` |f| (at least `resolution`), which rounding cannot tell from no change; all False for None."""
    if resolution is None:
        return torch.zeros_like(f, dtype=torch.bool)
    return -a * dphi0 <= resolution * torch.clamp_min(f.abs(), 1.0)


def _resolution(s: LBFGSSettings, dtype: torch.dtype) -> float:
    """The smallest change of a loss, relative to it, that counts as one: ftol, or rounding where that is larger
    (-> max(ftol, ROUNDING_EPS eps))."""
    return max(s.ftol, ROUNDING_EPS * torch.finfo(dtype).eps)


def _refreshed(refresh: Objective, x, f, g, active, partial: bool):
    """(f, g) with the active problems' values from `refresh`, and (B,) whether each is finite (the
    others keep their values)."""
    if partial:
        rows = torch.nonzero(active).flatten()
        every = len(rows) == len(x)
        f_r, g_r = refresh(x, None) if every else refresh(x.index_select(0, rows), rows)
        f_a, g_a = (f_r, g_r) if every else (f.index_copy(0, rows, f_r), g.index_copy(0, rows, g_r))
    else:
        f_a, g_a = refresh(x)
    fresh = _finite(f_a) & _finite(g_a).all(1)
    use = active & fresh
    return torch.where(use, f_a, f), torch.where(use[:, None], g_a, g), fresh | ~active


def _directions(S: Tensor, Y: Tensor, count: Tensor, head: Tensor, g: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """The search direction -H g of the problems `rows` (B,) bool from each one's own history, oldest pair
    first (empty slots are zero pairs, which contribute nothing; only as many pairs as the longest history
    holds), steepest descent where that is not a descent direction; and the first step: the unit step, but
    at most 1 / |g|_1 for a problem without curvature pairs. Zero for the other rows."""
    B, m = S.shape[:2]
    c = max(1, int(count.max()))
    order = (head[:, None] - c + torch.arange(c, device=g.device)[None, :]) % m  # (B, c) ring positions, oldest first
    ids = torch.arange(B, device=g.device)[:, None]
    r = -lbfgs_direction(S[ids, order], Y[ids, order], g, count > 0)
    d = torch.where(rows[:, None], r, torch.zeros_like(r))
    descent = (g * d).sum(1) < 0
    d = torch.where((rows & ~descent)[:, None], -g, d)  # reset to steepest descent if needed
    alpha = torch.ones(len(g), dtype=g.dtype, device=g.device)
    if not bool((count > 0).all()):
        alpha = torch.where(count > 0, alpha, (1.0 / g.abs().sum(1).clamp_min(1e-12)).clamp(max=1.0))
    return d, alpha


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
    than ftol) is not converged. Costs one evaluation per iteration."""
    s = settings or LBFGSSettings()
    x = x0.detach().clone()
    B, n = x.shape
    # no search is made or zoomed below rounding, but with a refresh (the collision iterations): there a term far
    # below the loss's rounding (the penalty of a few shallow pairs) is what moves the body
    resolution = None if refresh is not None else _resolution(s, x.dtype)
    active = torch.ones(B, dtype=torch.bool, device=x.device) if active is None else active.clone()
    f, g = (refresh or fun)(x, None) if partial else (refresh or fun)(x)
    evals = 1
    failed = ~(_finite(f) & _finite(g).all(1))
    active &= ~failed
    m = max(1, min(s.history, s.max_iter))
    S = x.new_zeros(B, m, n)
    Y = x.new_zeros(B, m, n)
    count = torch.zeros(B, dtype=torch.long, device=x.device)  # stored pairs per problem
    head = torch.zeros(B, dtype=torch.long, device=x.device)  # where each problem writes its next pair
    iters = torch.zeros(B, dtype=torch.long, device=x.device)
    restarts = torch.zeros(B, dtype=torch.long, device=x.device)
    converged = active & (g.abs().amax(1) <= s.gtol)
    active &= ~converged
    if s.max_iter <= 0:
        active = torch.zeros_like(active)
    rows = torch.arange(B, device=x.device)
    ls = _Search.empty(x, f)
    if bool(active.any()):
        ls = ls.restart(active, f, g, *_directions(S, Y, count, head, g, active))
        flat = _negligible(ls, active, f, resolution)
        converged |= flat
        active &= ~flat
    while bool(active.any()):
        # every running problem's trial point, in one call
        a_eval = torch.where(active, ls.a, torch.zeros_like(ls.a))
        trial_x = x + a_eval[:, None] * ls.d
        if partial:
            run = torch.nonzero(active).flatten()
            if len(run) == B:  # all of them: the objective need not pick rows
                f_a, g_a = fun(trial_x, None)
            else:
                f_r, g_r = fun(trial_x.index_select(0, run), run)
                f_a, g_a = f.index_copy(0, run, f_r), g.index_copy(0, run, g_r)
        else:
            f_a, g_a = fun(trial_x)
        evals += 1
        ls, ended, _ = _search_step(ls, f, active, a_eval, f_a, g_a, s, resolution)
        if not bool(ended.any()):
            continue

        # the problems whose search ended make their step (or fail to)
        step, f_new, g_new = ls.best[:, 0], ls.best[:, 1], ls.best_g
        moved = ended & (step > 0) & _finite(f_new)
        x_new = torch.where(moved[:, None], x + step[:, None] * ls.d, x)
        s_vec, y_vec = x_new - x, torch.where(moved[:, None], g_new, g) - g
        sy = (s_vec * y_vec).sum(1)
        store = moved & (sy > 1e-10)
        S[rows, head] = torch.where(store[:, None], s_vec, S[rows, head])
        Y[rows, head] = torch.where(store[:, None], y_vec, Y[rows, head])
        head = torch.where(store, (head + 1) % m, head)
        count = torch.where(store, (count + 1).clamp(max=m), count)
        f_old = f
        f = torch.where(moved, f_new, f)
        g = torch.where(moved[:, None], g_new, g)
        x = x_new
        iters += ended.long()
        rel = _relative_change(f_old, f)
        changed = torch.zeros_like(moved)
        if refresh is not None and bool(moved.any()):
            f_step = f
            f, g, fresh = _refreshed(refresh, x, f, g, moved, partial)
            evals += 1
            changed = moved & (_relative_change(f_step, f) > s.ftol)  # the refresh changed the objective
            moved &= fresh
            active &= fresh  # a refresh that is not finite ends the problem where it stands
        small_step = s_vec.abs().amax(1) <= s.xtol
        # a failed line search along a quasi-Newton direction (a non-smooth term, e.g. the collision
        # term's pairs appearing and vanishing, misleads the curvature pairs): forget the history and try
        # steepest descent next (at most max_restarts times: each restart can cost the stage's remaining
        # iterations); otherwise a failed search stops the problem
        unmoved = ended & active & ~moved
        stuck = unmoved
        if bool(unmoved.any()):
            retry = unmoved & (count > 0) & (restarts < s.max_restarts)
            restarts += retry.long()
            S[retry], Y[retry] = 0.0, 0.0
            count, head = torch.where(retry, 0, count), torch.where(retry, 0, head)
            stuck = unmoved & ~retry
        now = stuck | (ended & active & moved & ~changed & ((g.abs().amax(1) <= s.gtol) | (rel <= s.ftol) | small_step))
        converged |= now
        active &= ~now & ~(ended & (iters >= s.max_iter))
        nxt = ended & active  # their next iteration starts at the next call
        if bool(nxt.any()):
            ls = ls.restart(nxt, f, g, *_directions(S, Y, count, head, g, nxt))
            flat = _negligible(ls, nxt, f, resolution)
            converged |= flat
            active &= ~flat
    return LBFGSResult(x, f, iters, evals, converged, failed)
