// drover's closed set of error codes and the guard for codes that arrive as text (from a thread or Redis).
import { describe, expect, it } from 'vitest';
import { DROVER_ERROR_CODES, DroverError, isDroverErrorCode } from '../../src/domain/errors.js';
import { HYPERVISOR_ERROR_CODES } from '../../src/hypervisor/hypervisor.js';

describe('DroverErrorCode', () => {
  it('knows every code in the list and nothing else', () => {
    for (const code of DROVER_ERROR_CODES) expect(isDroverErrorCode(code)).toBe(true);
    expect(isDroverErrorCode('not-found')).toBe(false);
    expect(isDroverErrorCode('')).toBe(false);
    expect(isDroverErrorCode(404)).toBe(false);
    expect(isDroverErrorCode(undefined)).toBe(false);
  });

  it('lists each code once and includes every hypervisor code', () => {
    expect(new Set(DROVER_ERROR_CODES).size).toBe(DROVER_ERROR_CODES.length);
    for (const code of Object.values(HYPERVISOR_ERROR_CODES)) expect(isDroverErrorCode(code)).toBe(true);
  });

  it('is the code a DroverError carries', () => {
    const err = new DroverError('conflict', 'taken');
    expect(err.code).toBe('conflict');
    expect(isDroverErrorCode(err.code)).toBe(true);
  });
});
