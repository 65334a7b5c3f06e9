# Host emulation of the mbarrier / named-barrier protocol of kernels/flash_attention_bwd_wg_d128_ws.cu at
# warpgroup granularity (one warpgroup = 128 arrivals): random interleavings of the producer, the two consumer
# warpgroups and the cp.async copies landing (in order), for 2 and 3 stages, shared (DC 0) and one-way (DC 1)
# barriers, both step orders (BQ 48: dq^T of step it - 1 in flight across the exponentials; BQ 64: done
# before s^T / dp^T). Checks: a stage read only after its copies landed and not refilled while read; ds^T
# buffers read by dq^T only with both halves of the right step and not overwritten while read; a named
# barrier phase completed by exactly one arrive and one sync of different warpgroups (DC 1) or by both
# warpgroups (DC 0); mbarrier waits never satisfied by a later phase (parity aliasing); no deadlock.
# Run: python3 explore/bwd_wg128v_protocol.py (prints "... runs clean" per configuration).
import random, sys

class Err(Exception): pass

def run(S, DC, steps, rng, Q64=False):
    B = 3 if DC and not Q64 else 2
    # mbarriers: phase count, pending arrivals
    mb = {}
    def mb_init(n, cnt): mb[n] = [0, cnt, 0]  # completed phases, expected, arrived
    def mb_arrive(n, k):
        b = mb[n]; b[2] += k
        if b[2] > b[1]: raise Err(f"mbar {n} over-arrived")
        if b[2] == b[1]: b[0] += 1; b[2] = 0
    def mb_ready(n, parity, expect_phase):
        done = mb[n][0]
        ok = (done & 1) != parity  # try_wait.parity: the phase with this parity has completed
        if ok and done != expect_phase + 1: raise Err(f"mbar {n} waiter expects phase {expect_phase}, {done} done")
        return ok
    for s in range(S): mb_init(('full', s), 128); mb_init(('empty', s), 256)
    bars = {}
    def nb(i): return bars.setdefault(i, {'count': 0, 'who': [], 'gen': 0})
    stage_tag = [None] * S; stage_landed = [False] * S
    stage_readers = [set() for _ in range(S)]
    ds_tag = [[None, None] for _ in range(B)]
    ds_readers = [set() for _ in range(B)]
    landing = []  # queue of (stage) arrivals pending (in order)

    def producer():
        for t in range(steps):
            st = t % S
            if t >= S:
                while not mb_ready(('empty', st), (t // S - 1) & 1, t // S - 1): yield 'block'
            if stage_readers[st]: raise Err(f"producer overwrites stage {st} while read by {stage_readers[st]}")
            stage_tag[st] = t; stage_landed[st] = False
            landing.append(st)
            yield 'run'
    def lander():
        while True:
            if landing:
                st = landing.pop(0); stage_landed[st] = True; mb_arrive(('full', st), 128)
                yield 'run'
            else:
                yield 'idle'
    def bar_sync(w, i):
        b = nb(i); b['count'] += 128; b['who'].append(('sync', w)); g = b['gen']
        if b['count'] == 256: release(i)
        else:
            while b['gen'] == g: yield 'block'
    def bar_arrive(w, i):
        b = nb(i); b['count'] += 128; b['who'].append(('arrive', w))
        if b['count'] == 256: release(i)
    def release(i):
        b = bars[i]; who = b['who']
        if DC:
            kinds = sorted(x[0] for x in who)
            if kinds != ['arrive', 'sync'] or who[0][1] == who[1][1]: raise Err(f"barrier {i} phase by {who}")
        else:
            if sorted(x[1] for x in who) != [0, 1]: raise Err(f"barrier {i} phase by {who}")
        b['count'] = 0; b['who'] = []; b['gen'] += 1
    def await_ds(w, it):
        if DC: yield from bar_sync(w, 1 + 2 * (w ^ 1) + (it & 1))
        else: yield from bar_sync(w, 1)
    def dq_start(w, it):
        buf = it % B
        if ds_tag[buf] != [it, it]: raise Err(f"wg{w} dq({it}) reads buf {buf} holding {ds_tag[buf]}")
        ds_readers[buf].add((w, it))
    def dq_end(w, it):
        buf = it % B
        if ds_tag[buf] != [it, it]: raise Err(f"wg{w} dq({it}) buf {buf} changed to {ds_tag[buf]}")
        ds_readers[buf].discard((w, it))
    def consumer(w):
        for it in range(steps):
            st = it % S
            while not mb_ready(('full', st), (it // S) & 1, it // S): yield 'block'
            if stage_tag[st] != it or not stage_landed[st]: raise Err(f"wg{w} step {it} reads stage {st}: {stage_tag[st]}")
            stage_readers[st].add((w, it)); yield 'run'
            if it > 0:
                yield from await_ds(w, it - 1)
                dq_start(w, it - 1); yield 'run'
                if Q64: dq_end(w, it - 1); yield 'run'
            # s/dp done, write ds^T half w of buffer it % B
            buf = it % B
            if any(r for r in ds_readers[buf]): raise Err(f"wg{w} writes ds buf {buf} step {it} while read by {ds_readers[buf]}")
            ds_tag[buf][w] = it; yield 'run'
            if DC: bar_arrive(w, 1 + 2 * w + (it & 1)); yield 'run'
            if it > 0 and not Q64: dq_end(w, it - 1); yield 'run'
            if stage_tag[st] != it: raise Err(f"wg{w} stage {st} overwritten during step {it}")
            stage_readers[st].discard((w, it))
            mb_arrive(('empty', st), 128); yield 'run'
        yield from await_ds(w, steps - 1)
        dq_start(w, steps - 1); yield 'run'
        dq_end(w, steps - 1)
    ents = {'P': producer(), 'L': lander(), 'C0': consumer(0), 'C1': consumer(1)}
    state = {k: 'run' for k in ents}
    done = set()
    blocked_rounds = 0
    while len(done) < 3 or (landing):
        live = [k for k in ents if k not in done]
        k = rng.choice(live)
        try:
            r = next(ents[k])
        except StopIteration:
            done.add(k); continue
        state[k] = r
        if all(state[x] in ('block', 'idle') for x in live if x not in done) and not landing:
            blocked_rounds += 1
            if blocked_rounds > 200: raise Err(f"deadlock: {state}, done {done}")
        else:
            blocked_rounds = 0
    if any(bars[i]['count'] for i in bars): raise Err(f"barrier left with arrivals {bars}")

ok = True
for S, Q64 in ((2, False), (3, False), (2, True), (3, True)):
    for DC in (0, 1):
        rng = random.Random(1)
        n = 0
        for trial in range(3000):
            steps = rng.choice([1, 2, 3, 4, 5, 7, 12, 25])
            try:
                run(S, DC, steps, rng, Q64); n += 1
            except Err as e:
                print(f"S{S} DC{DC} steps {steps}: {e}"); ok = False; break
        print(f"S{S} DC{DC} Q64 {Q64}: {n} runs clean")
