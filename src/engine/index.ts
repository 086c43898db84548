/** Public entry of the serving engine (what the Web Worker wrapper imports). */
export { createEngine, chatPromptIds, type Engine, type EngineExtras, type ChatCompletions, type Completions } from './openai.ts';
export { memoryFeedback, type FeedbackSink, type FeedbackInput, type EngineFeedback } from './feedback.ts';
export { EngineCore, resolveLimits, type EngineModel, type ResolvedLimits } from './engine.ts';
export { planIteration } from '../scheduler/planner.ts';
// The frame budget: the rule, and the page-side monitor that feeds EngineCore.reportFrames (the worker client runs one itself).
export { DEFAULT_FRAME_BUDGET, FrameBudget, FrameBudgetOptionError, FrameReportError, validateFrameReport, type BudgetNow, type FrameBudgetOptions, type FrameReport } from '../scheduler/frame-budget.ts';
export { browserFrameClock, FrameMonitor, type FrameClock, type FrameMonitorOptions } from './frame-monitor.ts';
export type { IterationPlan, PlannedEntry, SchedulerState, RequestView, FinetuneJobView } from '../scheduler/types.ts';
export type * from '../scheduler/stats.ts';
export { EngineClosedError, EngineOptionsError, InvalidRequestError, PromptTooLongError } from './errors.ts';
export { AdapterNotFoundError, AdapterUnloadedError } from './adapters.ts';
export type * from './types.ts';
