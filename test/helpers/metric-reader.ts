/** A MetricReader that collects only when asked, as a Prometheus scrape does. */
import { MetricReader } from "@opentelemetry/sdk-metrics";

export class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}
