// The anchor guard lives with the learner (src/learn/anchor-guard.ts); the drift benchmark uses the same rule.
export * from '../../src/learn/anchor-guard.ts';
