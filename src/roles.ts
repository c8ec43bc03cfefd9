/**
 * Starts the roles named in config.roles. Each role registers its own
 * closers on the lifecycle, so shutdown drains them newest-first.
 */
import type { DaemonContext } from './daemon';

export async function startRoles(ctx: DaemonContext): Promise<void> {
  for (const role of ctx.config.roles) {
    switch (role) {
      case 'commands':
      case 'projections':
      case 'relay':
        ctx.log.warn({ role }, 'role is not built in this version yet; skipping it');
        break;
    }
  }
}
