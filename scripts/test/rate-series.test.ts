// The rate series reads counters from Prometheus text and finds the seconds that stalled.
import { counterValue, stallReport } from '../rate-series';

describe('rate-series', () => {
  it('sums a counter over its label sets and ignores other metrics', () => {
    const text = [
      '# HELP eraftkv_server_proposals_applied_total Log entries applied.',
      '# TYPE eraftkv_server_proposals_applied_total counter',
      'eraftkv_server_proposals_applied_total{group_id="1",node_id="1"} 120',
      'eraftkv_server_proposals_applied_total{group_id="2",node_id="1"} 30',
      'eraftkv_server_proposals_applied_total_other 5',
      'eraftkv_server_proposals_committed_total{group_id="1",node_id="1"} 999',
    ].join('\n');
    expect(counterValue(text, 'eraftkv_server_proposals_applied_total')).toBe(150);
    expect(counterValue(text, 'missing_total')).toBeNull();
  });

  it('reports the median, the slowest second and the seconds below half the median', () => {
    expect(stallReport([100, 110, 40, 105, 95])).toEqual({
      medianPerSecond: 100,
      slowestPerSecond: 40,
      stalledSeconds: [3],
    });
    expect(stallReport([100, 90, 110, 100]).stalledSeconds).toEqual([]);
    expect(stallReport([])).toEqual({
      medianPerSecond: 0,
      slowestPerSecond: 0,
      stalledSeconds: [],
    });
  });
});
