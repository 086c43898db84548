/**
 * One policy's live run of `mace bench drift`: the real model served by the engine under the
 * scheduler while a simulated user judges every answer by the preference rule in force *now* and
 * gives thumbs through the same `engine.feedback()` path the widget uses (a thumbs-down makes the
 * user press Regenerate, as in the widget, so a context gets a liked and a disliked answer and a
 * pair forms in the feedback log, which queues it for the learner).
 *
 *   - Requests: Poisson arrivals of the trace's story prompts (the train split; held-out prompts are
 *     never served here), temperature 1, seeded per request, `answerTokens` tokens.
 *   - Serving: requests use the *served* adapter: the last version the anchor guard promoted
 *     (guard.ts). The learner trains its own adapter ('learnt'); every `evalEveryS` the run takes a
 *     snapshot of it; a snapshot with a new version is checked on the anchor set and promoted to
 *     'served' or rolled back (the previous promoted version keeps serving). Anchors are pairs the
 *     user formed, one in `anchorEvery` held back from training, tagged with the phase they were
 *     formed in. The anchor set is the current phase's anchors in blocks of the guard's
 *     minAnchors (set id `phase:size`): when it grows by a block, the version in service is
 *     measured on it first (guard.rebase), so every decision compares versions on the same pairs.
 *   - The user's decisions and the sampling seeds are keyed by (session, attempt), so every policy
 *     sees the same user and, on the base model, the same answers.
 *   - Records: every served answer (time, phase, text), every request's latency (stats stream),
 *     every snapshot (time, versions, the promoted adapter's weights) for the offline evaluation.
 */
import type { Engine } from '../../src/engine/openai.ts';
import type { HostAdapter } from '../../src/learn/adapter.ts';
import type { PreferencePair } from '../../src/learn/pairs.ts';
import type { FinetuneStats, IterationStats, PolicyName, RequestStats, StatsRecord } from '../../src/scheduler/stats.ts';
import { mulberry32 } from '../../src/util/prng.ts';
import { colocation } from '../serve/metrics.ts';
import type { AnchorGuard } from './guard.ts';
import { ruleAt, type DriftSchedule } from './rules.ts';
import type { SimulatedUser } from './user.ts';

export interface DriftReplayOptions {
  policy: PolicyName;
  schedule: DriftSchedule;
  prompts: readonly string[];
  /** Poisson arrival rate (requests per second). */
  ratePerS: number;
  answerTokens: number;
  evalEveryS: number;
  maxRegenerations: number;
  /** One formed pair in `anchorEvery` is held back from training as an anchor (0: none). */
  anchorEvery: number;
  /** Pairs one rating may add to the learner (those with the most recent opposite answers). */
  pairsPerRating: number;
  /** Anchors checked per decision: the current phase's latest, in whole blocks of the guard's minAnchors. */
  maxAnchors: number;
  seed: number;
  log?: (m: string) => void;
}

export interface ServedAnswer {
  /** Seconds since the run started. */
  t: number;
  phase: string;
  prompt: string;
  text: string;
  rating: 'up' | 'down' | null;
  regeneration: number;
  adapterVersion: number;
}

export interface DriftSnapshot {
  t: number;
  /** The learner's version at t and the version that served after the guard's decision. */
  learntVersion: number;
  servedVersion: number;
  decision: 'promote' | 'rollback' | 'unchanged';
  anchorAccuracy: number | null;
  anchors: number;
  /** The served adapter's weights (null: the base model serves). */
  served: HostAdapter | null;
}

interface Anchor {
  pair: PreferencePair;
  phase: string;
}

export interface DriftReplayResult {
  policy: PolicyName;
  answers: ServedAnswer[];
  requests: RequestStats[];
  steps: FinetuneStats[];
  snapshots: DriftSnapshot[];
  pairsFormed: number;
  /** Pairs the feedback log formed beyond pairsPerRating per rating (not trained). */
  pairsDropped: number;
  anchorsHeld: number;
  /** performance.now() at the run's start (records' times are on that clock). */
  startMs: number;
  /** Of the iterations that ran decodes, how many also ran fine-tune units (bench/serve/metrics.ts). */
  colocation: ReturnType<typeof colocation>;
  wallS: number;
}

/** Anchor evaluation: reward accuracy of `host` over `anchors` (the run's eval trainer). */
export type AnchorEval = (host: HostAdapter, anchors: readonly PreferencePair[]) => Promise<number>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Exponential inter-arrival times from a seeded uniform source. */
function arrivals(ratePerS: number, durationS: number, seed: number): number[] {
  const rnd = mulberry32(seed);
  const out: number[] = [];
  for (let t = -Math.log(1 - rnd()) / ratePerS; t < durationS; t += -Math.log(1 - rnd()) / ratePerS) out.push(t);
  return out;
}

export async function replayDrift(engine: Engine, user: SimulatedUser, guard: AnchorGuard | null, evalAnchors: AnchorEval, o: DriftReplayOptions): Promise<DriftReplayResult> {
  const answers: ServedAnswer[] = [];
  const requests: RequestStats[] = [];
  const steps: FinetuneStats[] = [];
  const snapshots: DriftSnapshot[] = [];
  const anchors: Anchor[] = [];
  let anchorSet: { id: string; pairs: PreferencePair[] } | null = null;
  let pairsFormed = 0;
  let pairsDropped = 0;
  let servedVersion = 0;
  /** The last version the guard decided on (a rolled-back version is not decided again). */
  let lastDecided = 0;
  let served: HostAdapter | null = null;
  const trains = o.policy !== 'inference-only';
  const iterations: IterationStats[] = [];
  const unsubscribe = engine.core.onStats((r: StatsRecord) => {
    if (r.type === 'iteration') iterations.push(r);
    else if (r.type === 'request') requests.push(r);
    else if (r.type === 'finetune') steps.push(r);
  });
  const pick = mulberry32(o.seed ^ 0x9e3779b9);
  const startMs = performance.now();
  const nowS = () => (performance.now() - startMs) / 1000;

  /** One user turn: an answer, the thumbs, and Regenerate after a thumbs-down (bounded). */
  async function session(prompt: string, request: number): Promise<void> {
    for (let regeneration = 0; ; regeneration++) {
      const adapter = served ? 'served' : null;
      const seed = (o.seed * 1_000_003 + request * 64 + regeneration) % 2 ** 31;
      const r = await engine.completions.create({ prompt, max_tokens: o.answerTokens, temperature: 1, seed, adapter });
      const text = r.choices[0].text;
      const t = nowS();
      const phase = ruleAt(o.schedule, t);
      const rating = user.judge(text, phase.rule, { request, attempt: regeneration });
      answers.push({ t, phase: phase.name, prompt, text, rating, regeneration, adapterVersion: servedVersion });
      if (rating === null) return;
      const fb = await engine.feedback({ completionId: r.id, rating });
      // The feedback log pairs the new rating with EVERY opposite-rated answer of its context, and
      // the trace asks its 24 prompts again and again: pairs would grow with the square of the
      // ratings (and pair this phase's answers with the last phase's). The learner keeps the pairs
      // with the most recent opposite answers (pairsPerRating), the rest are not trained.
      const added = fb.added;
      const kept = added.slice(Math.max(0, added.length - o.pairsPerRating));
      for (const p of added) if (!kept.includes(p)) engine.core.forgetPair(p.id);
      pairsDropped += added.length - kept.length;
      for (const p of kept) {
        pairsFormed++;
        // Every anchorEvery-th pair is held back: it checks versions instead of training them.
        if (trains && o.anchorEvery > 0 && pairsFormed % o.anchorEvery === 0) {
          engine.core.forgetPair(p.id);
          anchors.push({ pair: p, phase: phase.name });
        }
      }
      if (!user.shouldRegenerate(rating, regeneration)) return;
    }
  }

  /**
   * The current phase's latest anchors in whole blocks of the guard's minAnchors, at most
   * maxAnchors (the check costs two forward passes per anchor, on the serving GPU); when the window
   * moves by a block, the guard is rebased on it.
   */
  async function currentAnchors(phase: string): Promise<{ id: string; pairs: PreferencePair[] } | null> {
    if (!guard) return null;
    const mine = anchors.filter((a) => a.phase === phase).map((a) => a.pair);
    const block = guard.minAnchors;
    const blocks = Math.floor(mine.length / block);
    const take = Math.min(blocks, Math.max(1, Math.floor(o.maxAnchors / block)));
    if (take === 0) return null;
    const start = (blocks - take) * block;
    const id = `${phase}:${start}-${start + take * block}`;
    if (anchorSet?.id !== id) {
      anchorSet = { id, pairs: mine.slice(start, start + take * block) };
      if (served) guard.rebase(await evalAnchors(served, anchorSet.pairs), { pairs: anchorSet.pairs.length, set: id });
    }
    return anchorSet;
  }

  /**
   * Snapshot the learner at scheduled time `t` (its label: timers fire a little late or early, and
   * a snapshot due at a drift belongs to the new phase); a new version is checked on the anchors and
   * promoted or rolled back.
   */
  async function snapshot(t: number): Promise<void> {
    const status = engine.learning.status();
    const learntVersion = status?.version ?? 0;
    let decision: DriftSnapshot['decision'] = 'unchanged';
    let anchorAccuracy: number | null = null;
    if (status && learntVersion > servedVersion && learntVersion > lastDecided) {
      const snap = await engine.learning.snapshot();
      const set = await currentAnchors(ruleAt(o.schedule, t).name);
      anchorAccuracy = set ? await evalAnchors(snap.host, set.pairs) : null;
      decision = guard ? guard.decide(snap.version, anchorAccuracy, { pairs: set?.pairs.length ?? 0, set: set?.id }) : 'promote';
      lastDecided = snap.version;
      if (decision === 'promote') {
        await engine.adapters.load('served', snap.host);
        served = snap.host;
        servedVersion = snap.version;
      }
    }
    snapshots.push({ t, learntVersion, servedVersion, decision, anchorAccuracy, anchors: anchors.length, served });
  }

  const times = arrivals(o.ratePerS, o.schedule.durationS, o.seed);
  const sessions: Promise<void>[] = [];
  const evalLoop = (async () => {
    await snapshot(0);
    for (let k = 1; k * o.evalEveryS <= o.schedule.durationS + 1e-9; k++) {
      await sleep(startMs + k * o.evalEveryS * 1000 - performance.now());
      await snapshot(k * o.evalEveryS);
    }
  })();
  for (const at of times) {
    await sleep(startMs + at * 1000 - performance.now());
    sessions.push(session(o.prompts[Math.floor(pick() * o.prompts.length)], sessions.length));
  }
  await Promise.all(sessions);
  await evalLoop;
  if (nowS() < o.schedule.durationS) await sleep(startMs + o.schedule.durationS * 1000 - performance.now());
  unsubscribe();
  const coloc = colocation(iterations);
  o.log?.(`  ${o.policy}: ${answers.length} answers, ${answers.filter((a) => a.rating).length} rated, ${pairsFormed} pairs kept (${pairsDropped} more formed, not trained; ${anchors.length} anchors), ${steps.length} steps, served version ${servedVersion}; decode iterations with fine-tune units ${coloc.mixedIterations}/${coloc.decodeIterations}`);
  return { policy: o.policy, answers, requests, steps, snapshots, pairsFormed, pairsDropped, anchorsHeld: anchors.length, startMs, colocation: coloc, wallS: nowS() };
}
