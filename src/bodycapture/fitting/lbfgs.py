"""Batched L-BFGS with a strong-Wolfe line search: B independent problems solved in lock-step.

Each problem b has its own parameters x_b (n values), loss f_b, curvature history, step length and
convergence state; one call of the objective evaluates all of them (their losses are independent, so
the gradient of sum_b f_b gives every g_b exactly). A problem that has converged stops moving while the
others go on. This is what makes fitting B people at once give the same answers as B single fits.

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
    evaluations: int  # objective calls (each evaluates all problems, or with `partial` those still searching)
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


def _line_search(fun: Objective, x, f, g, d, alpha, active, s: LBFGSSettings, partial: bool = False):
    """Strong-Wolfe step lengths for every active problem. Returns (alpha, f_new, g_new, evaluations).

    partial: evaluate only the problems still searching (`fun(x_rows, rows)`); the others keep their
    accepted values. Otherwise every call evaluates all B problems.

    Each point of the search is kept as one (B, 3) row of (step, f, slope): the trial point, the previous
    one and the two ends of the bracket, so that moving a point is one `where` (at B = 1 every torch
    operation costs microseconds, a few hundred per iteration)."""
    B = x.shape[0]
    dphi0 = (g * d).sum(1)
    prev = torch.stack([torch.zeros_like(f), f, dphi0], 1)  # (B, 3) the previous trial point: step 0
    lo, hi = prev, prev  # the bracket's ends
    bracketed = torch.zeros(B, dtype=torch.bool, device=x.device)
    done = ~active
    best, best_g = prev[:, :2], g  # (step, f) of the best sufficient-decrease point, and its gradient
    a = torch.where(active, alpha, torch.zeros_like(alpha))
    d_max = d.abs().amax(1)
    nobody = torch.zeros_like(done)
    evals = 0
    for it in range(s.max_ls):
        a_eval = torch.where(done, best[:, 0], a)
        if partial:
            rows = torch.nonzero(~done).flatten()
            if len(rows) == B:  # all of them: the objective need not pick rows
                f_a, g_a = fun(x + a_eval[:, None] * d, None)
            else:
                f_r, g_r = fun((x + a_eval[:, None] * d).index_select(0, rows), rows)
                f_a, g_a = best[:, 1].index_copy(0, rows, f_r), best_g.index_copy(0, rows, g_r)
        else:
            f_a, g_a = fun(x + a_eval[:, None] * d)
        evals += 1
        finite = _finite(f_a) & _finite(g_a).all(1)
        f_a = torch.where(finite, f_a, torch.full_like(f_a, float("inf")))
        dphi = (g_a * d).sum(1)
        dphi = torch.where(_finite(dphi), dphi, torch.zeros_like(dphi))
        trial = torch.stack([a_eval, f_a, dphi], 1)
        searching = ~done
        armijo_fail = f_a > f + s.c1 * a_eval * dphi0
        curvature_ok = dphi.abs() <= -s.c2 * dphi0

        # phase 1: not yet bracketed (each phase is skipped when no problem is in it: the same result, fewer
        # operations; a search is usually in one phase at a time)
        p1 = searching & ~bracketed
        to_zoom_a = to_zoom_b = accept1 = extend = nobody
        if bool(p1.any()):
            to_zoom_a = p1 & (armijo_fail | ((it > 0) & (f_a >= prev[:, 1])))  # bracket [prev, trial]
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
        take = (searching & ~armijo_fail & (f_a < best[:, 1])) | accepted
        best, best_g = torch.where(take[:, None], trial[:, :2], best), torch.where(take[:, None], g_a, best_g)
        done = done | accepted
        bracketed = bracketed | to_zoom_a | to_zoom_b
        any_bracketed = bool(bracketed.any())
        if any_bracketed:
            tiny = bracketed & ((hi[:, 0] - lo[:, 0]).abs() * d_max < s.xtol)
            done = done | (tiny & ~accepted)
        if bool(done.all()):  # (most searches end at their first trial: the unit step)
            break

        # the next trial: twice as far while not bracketed, else the cubic's minimiser inside the bracket
        prev = torch.where(extend[:, None], trial, prev)
        a = torch.where(extend, torch.where(finite, 2.0 * a_eval, 0.5 * a_eval), a)
        if any_bracketed:
            f_hi = torch.where(_finite(hi[:, 1]), hi[:, 1], lo[:, 1] + 1e30)
            a = torch.where(bracketed, _cubic_min(lo[:, 0], lo[:, 1], lo[:, 2], hi[:, 0], f_hi, hi[:, 2]), a)
    return best[:, 0], best[:, 1], best_g, evals


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


def minimize(fun: Objective, x0: Tensor, settings: LBFGSSettings | None = None,
             active: Tensor | None = None, partial: bool = False, refresh: Objective | None = None) -> LBFGSResult:
    """Minimise B independent objectives from x0 (B, n). `active` (B,) bool: problems to optimise
    (the others are returned unchanged).

    partial: `fun(x, rows)` can evaluate a subset of the problems (x (R, n) holds rows `rows` (R,) of
    the batch; rows is None for all). Line searches then evaluate only the problems still searching,
    so one slow problem does not make the whole batch pay (the results are the same).

    refresh: for an objective that holds something fixed along each line and updates it at each iterate
    (the collision term's colliding pairs: a pair appearing adds its penalty at once, a jump no line search
    can step over). Called like `fun` at the start and after every step, on the problems that moved; its
    values replace the line search's last ones, and a problem whose objective the refresh changed (by more
    than ftol) is not converged. Costs one evaluation per iteration."""
    s = settings or LBFGSSettings()
    x = x0.detach().clone()
    B, n = x.shape
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
    rows = torch.arange(B, device=x.device)
    back = torch.arange(m, device=x.device)
    for k in range(s.max_iter):
        if not bool(active.any()):
            break
        # the search direction -H g from each problem's own history, oldest pair first (empty slots are
        # zero pairs, which contribute nothing); only as many pairs as the longest history holds
        c = max(1, int(count.max()))
        order = (head[:, None] - c + back[None, :c]) % m  # (B, c) ring positions, oldest first
        r = -lbfgs_direction(S[rows[:, None], order], Y[rows[:, None], order], g, count > 0)
        d = torch.where(active[:, None], r, torch.zeros_like(r))
        descent = (g * d).sum(1) < 0
        d = torch.where((active & ~descent)[:, None], -g, d)  # reset to steepest descent if needed
        alpha0 = torch.ones_like(f)  # the unit step, but a first step without curvature pairs is at most 1 / |g|_1
        if not bool((count > 0).all()):
            alpha0 = torch.where(count > 0, alpha0, (1.0 / g.abs().sum(1).clamp_min(1e-12)).clamp(max=1.0))
        step, f_new, g_new, e = _line_search(fun, x, f, g, d, alpha0, active, s, partial)
        evals += e
        moved = active & (step > 0) & _finite(f_new)
        x_new = torch.where(moved[:, None], x + step[:, None] * d, x)
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
        iters += active.long()
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
        unmoved = active & ~moved
        stuck = unmoved
        if bool(unmoved.any()):
            retry = unmoved & (count > 0) & (restarts < s.max_restarts)
            restarts += retry.long()
            S[retry], Y[retry] = 0.0, 0.0
            count, head = torch.where(retry, 0, count), torch.where(retry, 0, head)
            stuck = unmoved & ~retry
        now = stuck | (active & moved & ~changed & ((g.abs().amax(1) <= s.gtol) | (rel <= s.ftol) | small_step))
        converged |= now
        active &= ~now
    return LBFGSResult(x, f, iters, evals, converged, failed)
