// Addresses for networks whose addresses batchbridge hands out itself (CNI's daemon IPAM). An
// address is taken while an endpoint holds it in the books or while an endpoint being created
// has claimed it (Endpoints.create); the choice and the claim happen in the same turn of the
// event loop, so two concurrent ADDs never get the same address.
import { parseCidr, type Cidr } from '../domain/addr.js';
import { pickAddress, rangeText, type AddressRange } from '../domain/address-range.js';
import { AddressesExhaustedError } from '../errors.js';

export type AddressTaken = (networkId: string, cidr: string) => boolean;

export class AddressAllocator {
  /** the address handed out last, per network and family: the next search starts after it */
  private readonly last = new Map<string, string>();

  constructor(private readonly taken: AddressTaken) {}

  pick(networkId: string, range: AddressRange): Cidr {
    const key = `${networkId} ${range.subnet.family}`;
    const prefix = range.subnet.prefix;
    const ip = pickAddress(range, (a) => this.taken(networkId, `${a}/${prefix}`), this.last.get(key) ?? null);
    if (ip === null) throw new AddressesExhaustedError(`no free IPv${range.subnet.family} address in range ${rangeText(range)} of network ${networkId}`);
    this.last.set(key, ip);
    return parseCidr(`${ip}/${prefix}`, 'address');
  }

  /** Forgets a network's search positions (it was deleted). */
  forget(networkId: string): void {
    this.last.delete(`${networkId} 4`);
    this.last.delete(`${networkId} 6`);
  }
}
