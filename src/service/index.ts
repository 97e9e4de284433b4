/** The decision service's public surface: the service, its options, and what embedders name. */
export { type AuthzFile, loadAuthz } from "./auth.js";
export type { Scheduler } from "./deadlines.js";
export { systemScheduler } from "./deadlines.js";
export {
  DECISION_SETTING_KEYS,
  type DecisionSettings,
  Dispatcher,
  decisionOf,
  FAIL_OPEN,
  type FailurePolicy,
} from "./dispatcher.js";
export {
  type CounterSnapshot,
  DECISION_WINDOW,
  DEFAULT_LIMITS,
  EchoService,
  type Operator,
  type SecurityOptions,
  type ServiceOptions,
} from "./echo-service.js";
export type { OutcomeAction, OutcomeCause, PolicyAction } from "./outcomes.js";
export type { TlsFiles } from "./server.js";
export { PROTOCOL_VERSION } from "./session.js";
