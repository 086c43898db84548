/**
 * The widget's conversation records (src/ui/conversation-store.ts) and rules
 * (src/ui/chat/conversation.ts): keys per (model, element id), validation that names the bad
 * field, round trips through structured clone, and what a turn sends / which adapter answers.
 * (The IndexedDB backend itself runs in the browser test, test/browser/widget.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import {
  ConversationFormatError,
  ConversationStore,
  conversationKey,
  emptyConversation,
  parseConversation,
  toRecord,
  type KeyValueBackend,
  type StoredConversation,
} from '../../src/ui/conversation-store.ts';
import { adapterFor, contextFor, dropAnswer, newAnswer, newerLearnt, newTurn } from '../../src/ui/chat/conversation.ts';

function sample(): StoredConversation {
  const c = emptyConversation(conversationKey('/models/stories260K/', 'chat-1'), 1_700_000_000_000);
  const t = newTurn(c, 'chat', 'Be brief.', 'Hello <b>there</b>');
  const a = newAnswer(t, null);
  a.completionId = 'chatcmpl-1';
  a.content = 'Hi! <img src=x onerror=alert(1)>';
  a.finishReason = 'stop';
  a.rating = 'down';
  const b = newAnswer(t, 'feedback');
  b.completionId = 'chatcmpl-2';
  b.content = 'Hello.';
  b.finishReason = 'length';
  b.rating = 'up';
  return c;
}

/** A backend over a Map holding structured clones, as IndexedDB does. */
function cloningBackend(): KeyValueBackend & { data: Map<string, unknown> } {
  const data = new Map<string, unknown>();
  return {
    data,
    get: async (k) => structuredClone(data.get(k)),
    set: async (k, v) => void data.set(k, structuredClone(v)),
    del: async (k) => void data.delete(k),
  };
}

function formatError(f: () => unknown): ConversationFormatError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConversationFormatError);
    return e as ConversationFormatError;
  }
  throw new Error('expected a ConversationFormatError');
}

describe('conversationKey', () => {
  it('keeps model and element id apart whatever they contain', () => {
    expect(conversationKey('a', 'b')).toBe('["a","b"]');
    expect(conversationKey(' owner/name ', 'x')).toBe(conversationKey('owner/name', 'x'));
    expect(conversationKey('a","b', 'c')).not.toBe(conversationKey('a', 'b","c'));
    expect(conversationKey('m', 'one')).not.toBe(conversationKey('m', 'two'));
    expect(conversationKey('m1', 'one')).not.toBe(conversationKey('m2', 'one'));
  });

  it('names the empty part', () => {
    expect(formatError(() => conversationKey('', 'x')).field).toBe('model');
    expect(formatError(() => conversationKey('m', '  ')).field).toBe('elementId');
    expect(formatError(() => conversationKey(undefined as unknown as string, 'x')).field).toBe('model');
  });
});

describe('parseConversation', () => {
  it('round-trips a conversation through structured clone and JSON', () => {
    const c = sample();
    expect(parseConversation(structuredClone(c))).toEqual(c);
    expect(parseConversation(JSON.parse(JSON.stringify(c)))).toEqual(c);
    expect(toRecord(c)).toEqual(c);
    expect(toRecord(c)).not.toBe(c);
  });

  it('names the first bad field', () => {
    const cases: [(c: Record<string, any>) => void, string][] = [
      [(c) => (c.version = 2), 'version'],
      [(c) => (c.updatedAt = 'yesterday'), 'updatedAt'],
      [(c) => (c.turns = {}), 'turns'],
      [(c) => (c.turns[0].user = 5), 'turns[0].user'],
      [(c) => (c.turns[0].mode = 'poem'), 'turns[0].mode'],
      [(c) => (c.turns[0].context[1] = { role: 'user' }), 'turns[0].context[1].content'],
      [(c) => (c.turns[0].answers[1].rating = 'meh'), 'turns[0].answers[1].rating'],
      [(c) => (c.turns[0].answers[0].finishReason = 'done'), 'turns[0].answers[0].finishReason'],
      [(c) => (c.turns[0].answers[0].completionId = 7), 'turns[0].answers[0].completionId'],
      [(c) => (c.turns[0].answers[0].adapter = undefined), 'turns[0].answers[0].adapter'],
      [(c) => (c.turns[0].selected = 2), 'turns[0].selected'],
      [(c) => (c.turns[0].selected = -1), 'turns[0].selected'],
      [(c) => (c.key = null), 'key'],
    ];
    for (const [spoil, field] of cases) {
      const c = structuredClone(sample()) as unknown as Record<string, any>;
      spoil(c);
      expect(formatError(() => parseConversation(c)).field, field).toBe(field);
    }
    expect(formatError(() => parseConversation(null)).field).toBe('conversation');
    expect(formatError(() => parseConversation([])).field).toBe('conversation');
  });

  it('a turn with no answer yet must select 0', () => {
    const c = emptyConversation('k', 1);
    newTurn(c, 'completion', '', 'Once upon a time');
    expect(parseConversation(structuredClone(c)).turns[0].answers).toEqual([]);
    (c.turns[0] as { selected: number }).selected = 1;
    expect(formatError(() => parseConversation(c)).field).toBe('turns[0].selected');
  });
});

describe('ConversationStore', () => {
  it('saves, loads and clears by key', async () => {
    const backend = cloningBackend();
    const store = new ConversationStore(backend);
    const c = sample();
    expect((await store.load(c.key)).kind).toBe('none');
    await store.save(c);
    const loaded = await store.load(c.key);
    expect(loaded).toEqual({ kind: 'found', conversation: c });
    await store.clear(c.key);
    expect(backend.data.has(c.key)).toBe(false);
  });

  it('an unreadable record gives a fresh conversation and the error, and is left in place', async () => {
    const backend = cloningBackend();
    backend.data.set('k', { version: 1, key: 'k', turns: [{ nope: true }], updatedAt: 0 });
    const loaded = await new ConversationStore(backend).load('k');
    expect(loaded.kind).toBe('unreadable');
    if (loaded.kind !== 'unreadable') return;
    expect(loaded.error.field).toBe('turns[0].context');
    expect(loaded.conversation.turns).toEqual([]);
    expect(backend.data.get('k')).toEqual({ version: 1, key: 'k', turns: [{ nope: true }], updatedAt: 0 });
  });

  it('a record stored under another key is refused', async () => {
    const backend = cloningBackend();
    backend.data.set('k', toRecord(emptyConversation('other', 1)));
    const loaded = await new ConversationStore(backend).load('k');
    expect(loaded.kind === 'unreadable' && loaded.error.field).toBe('key');
  });

  it('never writes an invalid conversation', async () => {
    const backend = cloningBackend();
    const c = sample();
    (c.turns[0] as { selected: number }).selected = 9;
    await expect(new ConversationStore(backend).save(c)).rejects.toBeInstanceOf(ConversationFormatError);
    expect(backend.data.size).toBe(0);
  });
});

describe('conversation rules', () => {
  it('chat mode sends the system prompt and every earlier turn with its shown answer', () => {
    const c = sample();
    expect(contextFor(c.turns, 'chat', 'Be brief.', 'And you?')).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello <b>there</b>' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'And you?' },
    ]);
    c.turns[0].selected = 0;
    expect(contextFor(c.turns, 'chat', '', 'x')[1]).toEqual({ role: 'assistant', content: 'Hi! <img src=x onerror=alert(1)>' });
  });

  it('completion mode sends only the text to continue (after a system prompt, if any)', () => {
    const c = sample();
    expect(contextFor(c.turns, 'completion', '', 'Once upon a time')).toEqual([{ role: 'user', content: 'Once upon a time' }]);
    expect(contextFor(c.turns, 'completion', 'Tell stories.', 'Once')).toEqual([
      { role: 'system', content: 'Tell stories.' },
      { role: 'user', content: 'Once' },
    ]);
  });

  it('a turn whose answers failed is left out of the context', () => {
    const c = emptyConversation('k', 1);
    newTurn(c, 'chat', '', 'first');
    expect(contextFor(c.turns, 'chat', '', 'second')).toEqual([{ role: 'user', content: 'second' }]);
  });

  it('regenerated answers keep the turn context; dropping one re-selects', () => {
    const c = emptyConversation('k', 1);
    const t = newTurn(c, 'chat', '', 'q');
    const a = newAnswer(t, null);
    const b = newAnswer(t, null);
    expect(t.selected).toBe(1);
    dropAnswer(t, b);
    expect(t.answers).toEqual([a]);
    expect(t.selected).toBe(0);
    dropAnswer(t, a);
    expect(t.selected).toBe(0);
  });

  it('adapter: the attribute wins, else the learnt adapter from version 1', () => {
    const learnt = { adapter: 'feedback', version: 2 };
    expect(adapterFor(null, null)).toBeNull();
    expect(adapterFor(null, { adapter: 'feedback', version: 0 })).toBeNull();
    expect(adapterFor(null, learnt)).toBe('feedback');
    expect(adapterFor('none', learnt)).toBeNull();
    expect(adapterFor('', learnt)).toBeNull();
    expect(adapterFor(' other ', learnt)).toBe('other');
  });

  it('learnt state only moves forward for one adapter name', () => {
    const v2 = { adapter: 'a', version: 2 };
    expect(newerLearnt(null, v2)).toBe(v2);
    expect(newerLearnt(v2, { adapter: 'a', version: 1 })).toBe(v2);
    expect(newerLearnt(v2, { adapter: 'a', version: 3 })).toEqual({ adapter: 'a', version: 3 });
    expect(newerLearnt(v2, { adapter: 'b', version: 1 })).toEqual({ adapter: 'b', version: 1 });
  });
});
