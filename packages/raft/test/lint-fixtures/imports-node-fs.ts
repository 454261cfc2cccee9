// Lint fixture: breaks the raft purity rule on purpose (IO from inside the core).
import { readFileSync } from 'node:fs';

export function loadHardState(path: string): string {
  return readFileSync(path, 'utf8');
}
