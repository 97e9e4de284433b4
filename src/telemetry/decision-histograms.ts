/**
 * icmpfwd_decision_duration_seconds{session, verdict}, kept here rather than in an SDK
 * Histogram: the `session` label is the client's Hello name, and the SDK's synchronous
 * instruments can never forget an attribute set, so every name a client ever chose stayed in
 * memory and in /metrics. This aggregation is a MetricProducer the readers collect beside the
 * SDK's own (Prometheus and the OTLP reader take it as `metricProducers`): a client name's
 * series exists while a session of that name is open, at most `maxSessions` names at a time;
 * decisions of sessions beyond the bound, and of a session calling itself "other", go to
 * `session="other"`, which is never removed.
 */
import { type Attributes, type HrTime, ValueType } from "@opentelemetry/api";
import { hrTime, type InstrumentationScope } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  type CollectionResult,
  type DataPoint,
  DataPointType,
  type Histogram,
  type HistogramMetricData,
  type MetricProducer,
} from "@opentelemetry/sdk-metrics";
import type { OutcomeAction } from "../service/outcomes.js";
import type { DecidingSession } from "../service/request-telemetry.js";
import { DECISION_BUCKETS } from "./metrics.js";

export const DECISION_METRIC = {
  name: "icmpfwd_decision_duration_seconds",
  description: "Receive to verdict, for requests a session decided",
  unit: "s",
  valueType: ValueType.DOUBLE,
} as const;

/** The label of decisions whose client has no series of its own. */
export const OTHER_SESSION = "other";

const VERDICT_INDEX: Readonly<Record<OutcomeAction, number>> = {
  reply: 0,
  consume: 1,
  fallthrough: 2,
};

/** One (session, verdict) histogram: explicit buckets, as the SDK's aggregation keeps them. */
class Accumulator {
  /** One count per bucket, the last for values above the largest bound. */
  readonly counts = new Array<number>(DECISION_BUCKETS.length + 1).fill(0);
  sum = 0;
  count = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  constructor(readonly attributes: Attributes) {}

  record(v: number): void {
    // Upper bounds are inclusive (the SDK's and Prometheus's `le`); 16 bounds: a short scan.
    let i = 0;
    while (i < DECISION_BUCKETS.length && v > DECISION_BUCKETS[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  snapshot(): Histogram {
    return {
      buckets: { boundaries: DECISION_BUCKETS, counts: this.counts.slice() },
      sum: this.sum,
      count: this.count,
      min: this.min,
      max: this.max,
    };
  }
}

/** One `session` label value: its open sessions and a histogram per verdict seen. */
class Series {
  /** Open sessions that recorded into it (sessions join at their first decision); not kept for "other". */
  sessions = 0;
  readonly startTime: HrTime = hrTime();
  readonly byVerdict: (Accumulator | undefined)[] = [undefined, undefined, undefined];

  constructor(readonly label: string) {}

  accumulator(verdict: OutcomeAction): Accumulator {
    const i = VERDICT_INDEX[verdict];
    let a = this.byVerdict[i];
    if (a === undefined) {
      a = new Accumulator({ session: this.label, verdict });
      this.byVerdict[i] = a;
    }
    return a;
  }
}

export class DecisionHistograms implements MetricProducer {
  /** Series by label, "other" excepted; at most maxSessions. */
  private readonly named = new Map<string, Series>();
  private readonly other = new Series(OTHER_SESSION);
  /**
   * The series each session records into, found without building a key per request. Keyed by
   * the session's DecidingSession object: sessions the dispatcher opened without one share its
   * default object and count as one session here.
   */
  private readonly joined = new WeakMap<DecidingSession, Series>();

  /**
   * @param maxSessions distinct `session` label values besides "other" (0: all are "other").
   * @param scope the scope the SDK's own icmpfwd instruments have, so the series' Prometheus
   *   `otel_scope_*` labels stay what they were.
   */
  constructor(
    readonly maxSessions: number,
    private readonly scope: InstrumentationScope,
    private readonly resource: Resource,
  ) {}

  /** One verdict's decision time, in seconds: a map lookup and a bucket scan, no allocation. */
  record(session: DecidingSession, verdict: OutcomeAction, seconds: number): void {
    (this.joined.get(session) ?? this.join(session)).accumulator(verdict).record(seconds);
  }

  /** The session closed: its name's series goes once no open session of that name is left. */
  sessionEnded(session: DecidingSession): void {
    const s = this.joined.get(session);
    if (s === undefined) return;
    this.joined.delete(session);
    if (s === this.other) return;
    if (--s.sessions === 0) this.named.delete(s.label);
  }

  private join(session: DecidingSession): Series {
    const label = session.clientName === "" ? "unnamed" : session.clientName;
    let s = label === OTHER_SESSION ? this.other : this.named.get(label);
    if (s === undefined) {
      if (this.named.size < this.maxSessions) {
        s = new Series(label);
        this.named.set(label, s);
      } else {
        // Full: this session's decisions count under "other" for its whole life, even if a
        // slot frees up meanwhile, so its counts are never split across two series.
        s = this.other;
      }
    }
    if (s !== this.other) s.sessions++;
    this.joined.set(session, s);
    return s;
  }

  async collect(): Promise<CollectionResult> {
    const endTime = hrTime();
    const dataPoints: DataPoint<Histogram>[] = [];
    for (const s of [...this.named.values(), this.other])
      for (const a of s.byVerdict)
        if (a !== undefined)
          dataPoints.push({
            startTime: s.startTime,
            endTime,
            attributes: a.attributes,
            value: a.snapshot(),
          });
    const metric: HistogramMetricData = {
      descriptor: DECISION_METRIC,
      // Always cumulative: the producer's data is not converted by the reader's preference.
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints,
    };
    return {
      resourceMetrics: {
        resource: this.resource,
        // Like an SDK instrument that has recorded nothing: no metric until there is data.
        scopeMetrics: dataPoints.length === 0 ? [] : [{ scope: this.scope, metrics: [metric] }],
      },
      errors: [],
    };
  }
}
