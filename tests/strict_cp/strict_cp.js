// An independent OCPP 1.6J charge point (ocpp-rpc in strict mode: every request and every
// answer is validated against the official 1.6 JSON schemas on this side too).
// Usage: node strict_cp.js ENDPOINT IDENTITY PASSWORD
// Runs a whole session, answers the central system's calls, prints one JSON report.
'use strict';
const { RPCClient } = require('ocpp-rpc');

async function main() {
    const [endpoint, identity, password] = process.argv.slice(2);
    const report = { calls: {}, inbound: [], validationFailures: [] };
    const cli = new RPCClient({
        endpoint, identity, password,
        protocols: ['ocpp1.6'],
        strictMode: true,
        reconnect: false,
        callTimeoutMs: 10000,
    });
    cli.on('strictValidationFailure', (e) => {
        report.validationFailures.push(String(e.error && e.error.message || e.error));
    });
    cli.handle(({ method, params }) => {
        report.inbound.push({ method, params });
        switch (method) {
            case 'SetChargingProfile': return { status: 'Accepted' };
            case 'ClearChargingProfile': return { status: 'Accepted' };
            case 'GetConfiguration':
                return { configurationKey: [{ key: 'HeartbeatInterval', readonly: false, value: '300' }] };
            case 'ChangeConfiguration': return { status: 'Accepted' };
            case 'TriggerMessage': return { status: 'Accepted' };
            case 'Reset': return { status: 'Accepted' };
            case 'GetCompositeSchedule': return { status: 'Rejected' };
            default: return { status: 'Rejected' };
        }
    });
    await cli.connect();
    const now = () => new Date().toISOString();
    report.calls.boot = await cli.call('BootNotification', {
        chargePointVendor: 'ocpp-rpc', chargePointModel: 'strict', firmwareVersion: '2.2.1',
    });
    report.calls.heartbeat = await cli.call('Heartbeat', {});
    report.calls.status = await cli.call('StatusNotification', {
        connectorId: 1, errorCode: 'NoError', status: 'Preparing', timestamp: now(),
    });
    report.calls.authorize = await cli.call('Authorize', { idTag: 'STRICT1' });
    report.calls.start = await cli.call('StartTransaction', {
        connectorId: 1, idTag: 'STRICT1', meterStart: 500, timestamp: now(),
    });
    const tx = report.calls.start.transactionId;
    report.calls.meter = await cli.call('MeterValues', {
        connectorId: 1, transactionId: tx,
        meterValue: [{ timestamp: now(), sampledValue: [
            { value: '900', measurand: 'Energy.Active.Import.Register', unit: 'Wh', context: 'Sample.Periodic' },
            { value: '10.0', measurand: 'Current.Import', phase: 'L1', unit: 'A' },
        ] }],
    });
    report.calls.dataTransfer = await cli.call('DataTransfer', { vendorId: 'com.example', messageId: 'x' });
    report.calls.stop = await cli.call('StopTransaction', {
        transactionId: tx, meterStop: 2500, timestamp: now(), reason: 'Local', idTag: 'STRICT1',
        transactionData: [{ timestamp: now(), sampledValue: [{ value: '2500' }] }],
    });
    report.calls.firmware = await cli.call('FirmwareStatusNotification', { status: 'Idle' });
    report.calls.diagnostics = await cli.call('DiagnosticsStatusNotification', { status: 'Idle' });
    // Stay until the central system's own call named in STRICT_CP_EXPECT arrived (outbox),
    // at most STRICT_CP_LINGER_MS.
    const expect = process.env.STRICT_CP_EXPECT;
    const deadline = Date.now() + Number(process.env.STRICT_CP_LINGER_MS || 15000);
    while (expect && Date.now() < deadline && !report.inbound.some((c) => c.method === expect)) {
        await new Promise((r) => setTimeout(r, 50));
    }
    await cli.close();
    process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((err) => {
    process.stdout.write(JSON.stringify({ fatal: String(err && err.stack || err) }) + '\n');
    process.exit(1);
});
