// The network both firewall golden-test files plan for; each overrides what it needs.
import type { FwNetwork } from '../../src/firewall/types.js';

export function fwNetwork(over: Partial<FwNetwork> = {}): FwNetwork {
  return {
    id: 'aaaaaaaaaaaa0123456789',
    bridge: 'bb-a',
    subnet4: '198.18.20.0/24',
    subnet6: null,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    hostIpv4: null,
    internal: false,
    gatewayModeIpv4: 'nat',
    gatewayModeIpv6: 'nat',
    ...over,
  };
}
