"""A literal, loop-level reading of docs/ARCHITECTURE.md with Python integers.

Deliberately naive and independent of golden/'s implementation (no float64, no torch conv, no
folding of the ISG factors into weights): per output, the group sums A_p over the window, the
shift-add combine, then t, u, v, y exactly as §2-§3 write them.
"""

import numpy as np


def rshift_round(t: int, shift: int) -> int:
    return (t + (1 << (shift - 1))) >> shift


def requant(t: int, rq, k: int) -> int:
    u = rshift_round(t, rq.shift)
    return min(max(u + rq.zero_point, rq.lo), rq.hi)


def conv(x, layer):
    x = np.asarray(x, dtype=object)
    n_, h, w, _ = x.shape
    c_out, kh_, kw_, c_in_g = layer.weight.shape
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    xp = np.full((n_, h + 2 * ph, w + 2 * pw, x.shape[3]), layer.in_zero_point, dtype=object)
    xp[:, ph:ph + h, pw:pw + w, :] = x
    ho = (h + 2 * ph - dh * (kh_ - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw_ - 1) - 1) // sw + 1
    wt = layer.weight.tolist()
    codes = layer.isg_codes.tolist()
    m, b = layer.requant.multiplier.tolist(), layer.requant.offset.tolist()
    n_shift = layer.isg_shift
    out = np.zeros((n_, ho, wo, c_out), dtype=np.int64)
    for n in range(n_):
        for oh in range(ho):
            for ow in range(wo):
                for k in range(c_out):
                    base = (k // (c_out // layer.groups)) * c_in_g
                    groups = {}        # A_p, keyed by the group's code
                    for kh in range(kh_):
                        for kw in range(kw_):
                            for c in range(c_in_g):
                                i = base + c
                                a = wt[k][kh][kw][c] * xp[n, oh * sh + kh * dh, ow * sw + kw * dw, i]
                                groups[codes[i]] = groups.get(codes[i], 0) + a
                    s = sum((a_p << n_shift) + s_p * a_p for s_p, a_p in groups.items())
                    out[n, oh, ow, k] = requant(s * m[k] + b[k], layer.requant, k)
    return out


def residual_add(x1, x2, add):
    (z1, z2), (m1, m2) = add.zero_points, add.requant.multiplier.tolist()
    f = np.vectorize(lambda a, b: requant((int(a) - z1) * m1 + (int(b) - z2) * m2, add.requant, 0))
    return f(np.asarray(x1), np.asarray(x2)).astype(np.int64)


def avg_pool(x, pool):
    x = np.asarray(x, dtype=object)
    n_, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw) = pool.kernel, pool.stride, pool.padding
    xp = np.full((n_, h + 2 * ph, w + 2 * pw, c), pool.in_zero_point, dtype=object)
    xp[:, ph:ph + h, pw:pw + w, :] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    m = int(pool.requant.multiplier[0])
    out = np.zeros((n_, ho, wo, c), dtype=np.int64)
    for n in range(n_):
        for oh in range(ho):
            for ow in range(wo):
                for ch in range(c):
                    total = sum(xp[n, oh * sh + i, ow * sw + j, ch] for i in range(kh) for j in range(kw))
                    out[n, oh, ow, ch] = requant((total - kh * kw * pool.in_zero_point) * m, pool.requant, 0)
    return out


def max_pool(x, kernel, stride, padding):
    x = np.asarray(x)
    n_, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n_, ho, wo, c), dtype=np.int64)
    for oh in range(ho):
        for ow in range(wo):
            r0, c0 = oh * sh - ph, ow * sw - pw
            win = x[:, max(r0, 0):r0 + kh, max(c0, 0):c0 + kw, :]
            out[:, oh, ow, :] = win.max(axis=(1, 2))
    return out
