/**
 * The one counter registry: every component's counters and gauges by dotted name. GetStats,
 * WatchStats, the SIGUSR1 / --stats-file dump and the Prometheus `icmpfwd_counter_total` /
 * `icmpfwd_gauge` series all read it, so they name the same set.
 */
import type { CounterSnapshot } from "../service/index.js";

type Read = () => Readonly<Record<string, number>>;

export class CounterRegistry {
  private readonly counterSources: Read[] = [];
  private readonly gaugeSources: Read[] = [];

  /** Monotonic counters (names must not collide with another source's). */
  addCounters(read: Read): void {
    this.counterSources.push(read);
  }

  /** Values that go up and down. */
  addGauges(read: Read): void {
    this.gaugeSources.push(read);
  }

  snapshot(): CounterSnapshot {
    const counters: Record<string, number> = {};
    for (const read of this.counterSources) Object.assign(counters, read());
    const gauges: Record<string, number> = {};
    for (const read of this.gaugeSources) Object.assign(gauges, read());
    return { counters, gauges };
  }

  /** Counters and gauges in one object, as the stats dump writes them. */
  flat(): Record<string, number> {
    const s = this.snapshot();
    return { ...s.counters, ...s.gauges };
  }
}
