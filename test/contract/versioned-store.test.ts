import { objectStoreContract } from './object-store-contract.ts';
import { VersionedMemoryStore } from '../support/versioned-store.ts';

// The stand-in for a versioned S3 bucket that the functions' tests run on must behave as the real stores do.
objectStoreContract('VersionedMemoryStore', async () => ({ store: new VersionedMemoryStore() }), { versions: 'kept' });
