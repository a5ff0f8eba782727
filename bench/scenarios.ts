// The scenarios a run makes after its cold start, in their order, and what each builds on: the
// subset `--scenarios` asks for, checked before a cluster is started.

export const SCENARIOS = {
  create: { name: 'create burst', needs: [] },
  scale: { name: 'scale burst', needs: ['create'] },
  drift: { name: 'drift repair', needs: ['scale'] },
  restart: { name: 'edit during a restart', needs: [] },
  steady: { name: 'steady state', needs: [] },
  delete: { name: 'delete', needs: ['create'] },
  floor: { name: 'floor', needs: [] },
} as const satisfies Record<string, { name: string; needs: readonly string[] }>;

export type ScenarioKey = keyof typeof SCENARIOS;

const KEYS = Object.keys(SCENARIOS) as ScenarioKey[];

const isKey = (word: string): word is ScenarioKey => (KEYS as string[]).includes(word);

/**
 * `--scenarios create,restart`: the keys in run order, or why they cannot run (an unknown word, or
 * a scenario without the one it builds on: drift repair reverts the scale burst's replicas, the
 * delete removes the create burst's Echoes).
 */
export function parseScenarios(raw: string): ScenarioKey[] | string {
  const words = raw
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '');
  if (words.length === 0) return `--scenarios needs at least one of ${KEYS.join(', ')}`;
  const unknown = words.filter((w) => !isKey(w));
  if (unknown.length > 0)
    return `--scenarios: no scenario "${unknown.join('", "')}" (there are ${KEYS.join(', ')})`;
  const chosen = new Set(words as ScenarioKey[]);
  for (const key of chosen) {
    const missing = SCENARIOS[key].needs.filter((need) => !chosen.has(need));
    if (missing.length > 0)
      return `--scenarios: ${key} builds on ${missing.join(', ')}; add it to the list`;
  }
  return KEYS.filter((k) => chosen.has(k));
}

/** Whether a run with these options makes the scenario of this name (every one by default). */
export function runsScenario(selected: readonly ScenarioKey[] | undefined, name: string): boolean {
  if (selected === undefined) return true;
  const key = KEYS.find((k) => SCENARIOS[k].name === name);
  return key === undefined || selected.includes(key);
}
